"""queuejob.operate: parsing requests, once-per-id, when a finished Job restarts, status rows."""

from __future__ import annotations

import json
from typing import Any

import kopf
import pytest

from queuejob import operate
from queuejob.handlers.refresh import needs_refresh
from workqueue.models import LeaseInfo


def annotated(request: Any) -> dict[str, Any]:
    raw = request if isinstance(request, str) else json.dumps(request)
    return {"annotations": {operate.REQUEST_ANNOTATION: raw}}


@pytest.mark.parametrize(
    ("request_", "parsed"),
    [
        ({"id": "a", "action": "redrive", "all": True}, operate.Request("a", "redrive", all=True)),
        (
            {"id": "b", "action": "redrive", "items": ["x", "y"]},
            operate.Request("b", "redrive", items=("x", "y")),
        ),
        (
            {"id": "c", "action": "add", "configMap": "cm"},
            operate.Request("c", "add", config_map="cm"),
        ),
    ],
)
def test_valid_requests(request_: dict[str, Any], parsed: operate.Request) -> None:
    assert operate.parse_request(json.dumps(request_)) == parsed


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "is not JSON"),
        ("[1]", "must be a JSON object"),
        ('{"action": "redrive", "all": true}', "request.id"),
        ('{"id": "a", "action": "delete"}', "request.action must be one of redrive, add"),
        ('{"id": "a", "action": "add"}', "request.configMap"),
        ('{"id": "a", "action": "redrive"}', "request.items must be a non-empty list"),
        ('{"id": "a", "action": "redrive", "items": ["x", ""]}', "request.items"),
        ('{"id": "a", "action": "redrive", "items": ["x"], "all": true}', "exclusive"),
        (json.dumps({"id": "a", "action": "redrive", "items": ["i"] * 1001}), "at most 1000"),
    ],
)
def test_bad_requests_name_the_field(raw: str, message: str) -> None:
    with pytest.raises(operate.RequestError, match=message):
        operate.parse_request(raw)


def test_a_request_is_pending_until_its_id_is_recorded() -> None:
    meta = annotated({"id": "r1", "action": "redrive", "all": True})
    assert operate.pending_request(meta, {}) is not None
    assert operate.pending_request(meta, {"lastRequest": {"id": "r0"}}) is not None
    assert operate.pending_request(meta, {"lastRequest": {"id": "r1"}}) is None
    assert operate.pending_request({}, {}) is None
    # A malformed annotation gets a stable id (a digest), so it is reported once.
    bad = annotated("{oops")
    rid = operate.request_id("{oops")
    assert rid.startswith("sha256:") and rid == operate.request_id("{oops")
    assert operate.pending_request(bad, {"lastRequest": {"id": rid}}) is None


def test_a_pending_request_wakes_the_refresh_of_a_finished_queuejob() -> None:
    body = kopf.Body(
        {
            "metadata": annotated({"id": "r1", "action": "redrive", "all": True}),
            "spec": {},
            "status": {"queue": "q", "phase": "Failed"},
        }
    )
    assert needs_refresh(body.spec, body.status, meta=body.meta) is True
    assert needs_refresh(body.spec, {**body.status, "lastRequest": {"id": "r1"}}) is False


def job(*conditions: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": "u1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


@pytest.mark.parametrize(
    ("the_job", "done", "reopened", "expected"),
    [
        (None, False, True, False),  # no Job: the refresh creates one the usual way
        (job(), False, False, False),  # still running: its workers lease the new items
        (job("Complete"), True, False, False),  # finished and nothing to do
        (job("Complete"), False, False, True),  # items arrived after the workers exited
        (job("SuccessCriteriaMet"), False, False, True),
        (job("Failed"), False, False, False),  # failed for good: the QueueJob fails
        (job("Failed"), False, True, True),  # ... unless a request reopened it
        (job(deleting=True), False, False, True),  # the old one is still being deleted
    ],
)
def test_when_a_finished_job_is_recreated(
    the_job: dict[str, Any] | None, done: bool, reopened: bool, expected: bool
) -> None:
    assert operate.restart_due(the_job, done, reopened) is expected


def test_lease_rows_are_bounded_oldest_first() -> None:
    leases = [LeaseInfo(f"i{n}", f"pod-{n}", 1, 1_000.0 + n, 2_000.0) for n in range(30)]
    leases.append(LeaseInfo("old-client", "pod-x", 2, None, 2_000.0))
    rows = operate.lease_rows(list(reversed(leases)))
    assert len(rows) == operate.LEASES_SHOWN
    assert rows[0] == {"item": "old-client", "worker": "pod-x", "attempt": 2}
    assert rows[1] == {
        "item": "i0",
        "worker": "pod-0",
        "attempt": 1,
        "since": "1970-01-01T00:16:40Z",
    }


def test_a_request_on_a_queuejob_with_a_config_error_is_refused_not_left_waiting() -> None:
    error = {"type": "ConfigError", "status": "True", "reason": "ConfigMapNotFound"}
    meta = annotated({"id": "r1", "action": "add", "configMap": "cm"})
    status = {"phase": "Failed", "conditions": [error]}
    assert needs_refresh({}, status, meta=meta) is True
    assert needs_refresh({}, status) is False
    # Not seeded yet (no queue, no error): the request waits for the queue.
    assert needs_refresh({}, {"phase": "Pending"}, meta=meta) is False
