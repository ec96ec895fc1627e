"""Unit tests of status bookkeeping: StatusWriter and the refresh timer's filter and helpers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest
from op_kopf import capture_events, drain

from queuejob.handlers.refresh import job_failure, needs_refresh, queue_removed
from queuejob.metrics import Metrics
from queuejob.statuswriter import StatusWriter

LOGGER = logging.getLogger("test_op_status")
BODY = kopf.Body(
    {
        "apiVersion": "workqueue.example.com/v1alpha1",
        "kind": "QueueJob",
        "metadata": {"name": "qj", "namespace": "ns", "uid": "u-1"},
    }
)


def _run(status: dict[str, Any], change: Any) -> tuple[dict[str, Any], list[Any], Metrics]:
    """Apply ``change(writer)``; the resulting status patch, the Events posted, the metrics."""
    patch = kopf.Patch()
    metrics = Metrics(4)

    async def go() -> list[Any]:
        events = capture_events()
        change(StatusWriter(BODY, status, patch, LOGGER, metrics))
        return drain(events)

    events = asyncio.run(go())
    return dict(patch.status), events, metrics


def test_set_writes_only_changed_fields() -> None:
    def change(w: StatusWriter) -> None:
        w.set("progress", "1/2")
        w.set("queue", "q1")
        assert w.get("queue") == "q1"

    patch, events, _ = _run({"progress": "1/2", "queue": "q0"}, change)
    assert patch == {"queue": "q1"}
    assert events == []


def test_a_phase_change_posts_one_event_and_counts_it() -> None:
    def change(w: StatusWriter) -> None:
        w.phase_to("Failed", "ItemsDeadLettered", "2 of 5 items dead-lettered")
        w.phase_to("Failed", "Again", "no second event")
        assert w.phase == "Failed"

    patch, events, metrics = _run({"phase": "Running"}, change)
    assert patch == {"phase": "Failed"}
    [event] = events
    assert (event.type, event.reason) == ("Warning", "ItemsDeadLettered")
    assert event.message == "Phase Running -> Failed: 2 of 5 items dead-lettered"
    assert metrics.registry.get_sample_value("queuejob_phase_changes_total", {"phase": "Failed"})


def test_no_phase_change_no_event() -> None:
    patch, events, _ = _run({"phase": "Running"}, lambda w: w.phase_to("Running", "R", "m"))
    assert patch == {}
    assert events == []


def test_suspended_sets_both_conditions_and_the_phase() -> None:
    patch, events, _ = _run({"phase": "Running"}, lambda w: w.suspended("Job x suspended"))
    assert patch["phase"] == "Suspended"
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert by_type["Suspended"]["status"] == "True"
    assert by_type["Running"]["status"] == "False"
    assert [e.reason for e in events] == ["Suspended"]
    assert events[0].type == "Normal"


def test_unchanged_condition_writes_nothing() -> None:
    def change(w: StatusWriter) -> None:
        w.condition("Seeded", True, "ItemsSeeded", "3 items")

    first, _, _ = _run({}, change)
    again, _, _ = _run({"conditions": first["conditions"]}, change)
    assert again == {}


SEEDED = {"type": "Seeded", "status": "True", "reason": "ItemsSeeded"}
REMOVED = {"type": "Seeded", "status": "False", "reason": "QueueRemoved"}
CONFIG_ERROR = {"type": "ConfigError", "status": "True", "reason": "InvalidSpec"}


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({}, {}, False),  # not seeded yet
        ({}, {"queue": "q", "phase": "Running", "conditions": [SEEDED]}, True),
        ({}, {"queue": "q", "phase": "Failed", "conditions": [CONFIG_ERROR]}, False),
        ({}, {"queue": "q", "phase": "Succeeded", "activeWorkers": 0}, False),
        ({}, {"queue": "q", "phase": "Succeeded", "activeWorkers": 2}, True),
        ({"ttlSecondsAfterFinished": 5}, {"queue": "q", "phase": "Failed"}, True),
        (
            {"ttlSecondsAfterFinished": 5},
            {"queue": "q", "phase": "Succeeded", "conditions": [REMOVED]},
            False,
        ),
        ({"suspend": True}, {"queue": "q", "phase": "Suspended"}, False),
        ({"suspend": True}, {"queue": "q", "phase": "Suspended", "counts": {"leased": 1}}, True),
        ({"suspend": True}, {"queue": "q", "phase": "Suspended", "activeWorkers": 1}, True),
        ({"suspend": False}, {"queue": "q", "phase": "Suspended"}, True),  # resuming
    ],
)
def test_needs_refresh_skips_only_runs_that_would_do_nothing(
    spec: dict[str, Any], status: dict[str, Any], expected: bool
) -> None:
    body = kopf.Body({"spec": spec, "status": status})
    assert needs_refresh(body.spec, body.status) is expected


def test_queue_removed_and_job_failure() -> None:
    assert queue_removed(REMOVED)
    assert not queue_removed(SEEDED)
    assert not queue_removed(None)
    failed = {
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        }
    }
    assert job_failure(failed) == (
        "BackoffLimitExceeded: Job has reached the specified backoff limit"
    )
    indexed = {
        "status": {
            "failedIndexes": "2",
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "MaxFailedIndexesExceeded"},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "MaxFailedIndexesExceeded",
                    "message": "Job has exceeded the specified maximal number of failed indexes",
                },
            ],
        }
    }
    assert job_failure(indexed) == (
        "MaxFailedIndexesExceeded: Job has exceeded the specified maximal number of failed "
        "indexes (failed indexes: 2)"
    )
    # FailureTarget alone (pods still terminating) is not yet a failed Job
    target_only = {"status": {"conditions": indexed["status"]["conditions"][:1]}}
    assert job_failure(target_only) is None
    assert job_failure({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) is None
    assert job_failure(None) is None
