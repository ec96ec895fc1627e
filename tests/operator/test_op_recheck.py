"""The config re-check: which QueueJobs it runs for, its clock (the refresher's, no kopf
timer), its setting."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf
import pytest

import queuejob.operator_main  # noqa: F401  (registers the handlers)
from queuejob import settings as qs
from queuejob.handlers import events, recheck
from queuejob.handlers.recheck import needs_config_recheck
from queuejob.handlers.refresh import Outcome
from queuejob.handlers.startup import _quiet_event_success
from queuejob.pacing import RefreshPacer
from queuejob.runtime import Runtime
from queuejob.settings import SettingsError


def _error(reason: str, status: str = "True") -> dict[str, Any]:
    return {"type": "ConfigError", "status": status, "reason": reason, "message": "m"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"phase": "Failed", "conditions": [_error("ConfigMapNotFound")]}, True),
        ({"phase": "Failed", "conditions": [_error("SecretNotFound")]}, True),
        ({"phase": "Failed", "conditions": [_error("InvalidItems")]}, True),
        # Errors only a spec change can fix: no timer, no slot.
        ({"phase": "Failed", "conditions": [_error("InvalidSpec")]}, False),
        ({"phase": "Failed", "conditions": [_error("JobRejected")]}, False),
        # Resolved, or failed for another cause (dead letters): nothing to re-check.
        ({"phase": "Running", "conditions": [_error("Resolved", "False")]}, False),
        ({"phase": "Failed", "conditions": [_error("Resolved", "False")]}, False),
        (
            {
                "phase": "Failed",
                "conditions": [{"type": "Failed", "status": "True", "reason": "ItemsDeadLettered"}],
            },
            False,
        ),
        # Not (or no longer) Failed: a change handler is at work.
        ({"phase": "Pending", "conditions": [_error("ConfigMapNotFound")]}, False),
        ({}, False),
    ],
)
def test_needs_config_recheck_only_for_fixable_config_errors(
    status: dict[str, Any], expected: bool
) -> None:
    body = kopf.Body({"spec": {}, "status": status})
    assert needs_config_recheck(body.status) is expected


def test_no_kopf_timer_or_daemon_is_registered() -> None:
    """kopf keeps the whole latest body of every object of a resource with a timer or daemon
    (whatever its ``when`` filter): the re-check runs on the refresher's clock instead."""
    assert list(kopf.get_default_registry()._spawning.get_all_handlers()) == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _runtime(clock: Clock, every: float = 30.0) -> Runtime:
    runtime = Runtime.build(qs.OperatorSettings(config_recheck_interval=every))
    runtime.pacer = RefreshPacer(120.0, 600.0, clock=clock)
    return runtime


FAILED = {"phase": "Failed", "conditions": [_error("ConfigMapNotFound")]}


def test_the_recheck_runs_one_interval_after_the_failure_then_every_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    runtime = _runtime(clock)
    memo = kopf.Memo(runtime=runtime)
    ran: list[float] = []
    outcomes: list[Exception | None] = [None, kopf.PermanentError("InvalidItems"), None]

    async def config_recheck(**_: Any) -> None:
        ran.append(clock.now)
        error = outcomes.pop(0)
        if error is not None:
            raise error

    monkeypatch.setattr(recheck, "config_recheck", config_recheck)

    def call() -> Outcome:
        return asyncio.run(recheck.recheck_when_due(uid="u", memo=memo, status=FAILED))

    assert call() == Outcome(idle=True, next_in=30.0)  # first seen: not now
    clock.now += 10
    assert call() == Outcome(idle=True, next_in=20.0)  # another trigger: still not due
    assert ran == []
    clock.now += 20
    assert call() == Outcome(idle=True, next_in=30.0)
    assert ran == [1030.0]
    clock.now += 30
    assert call() == Outcome(idle=True, next_in=30.0)  # failed for good: the clock goes on
    clock.now += 29
    assert call().next_in == pytest.approx(1.0)
    clock.now += 1
    call()
    assert ran == [1030.0, 1060.0, 1090.0]
    runtime.pacer.recheck_over("u")  # resolved: a later failure waits one interval again
    assert call() == Outcome(idle=True, next_in=30.0)
    runtime.pacer.forget("u")
    assert runtime.pacer.recheck_wait("u", 30.0) == 30.0


@pytest.mark.parametrize(
    ("status", "meta", "route"),
    [
        (FAILED, {}, "recheck"),
        # A request waits on a QueueJob with a config error: the refresh refuses it.
        (FAILED, {"annotations": {"workqueue.example.com/request": '{"action": "redrive"}'}},
         "refresh"),
        ({"phase": "Running", "queue": "q"}, {}, "refresh"),
        ({"phase": "Failed", "conditions": [_error("InvalidSpec")]}, {}, None),
    ],
)  # fmt: skip
def test_the_refresher_runs_the_recheck_or_the_refresh(
    monkeypatch: pytest.MonkeyPatch,
    status: dict[str, Any],
    meta: dict[str, Any],
    route: str | None,
) -> None:
    routed: list[str] = []

    async def to_recheck(**_: Any) -> Outcome:
        routed.append("recheck")
        return Outcome(idle=True)

    async def to_refresh(**_: Any) -> Outcome:
        routed.append("refresh")
        return Outcome(idle=True)

    monkeypatch.setattr(events, "recheck_when_due", to_recheck)
    monkeypatch.setattr(events, "refresh", to_refresh)
    runtime = _runtime(Clock())
    raw: dict[str, Any] = {"metadata": {"uid": "u", **meta}, "spec": {}, "status": status}
    body = kopf.Body(cast(kopf.RawBody, raw))
    asyncio.run(
        events.refresh_if_needed(
            body=body,
            spec=body.spec,
            meta=body.metadata,
            status=body.status,
            uid="u",
            memo=kopf.Memo(runtime=runtime),
        )
    )
    assert routed == ([route] if route else [])


def test_recheck_interval_setting() -> None:
    assert qs.OperatorSettings().config_recheck_interval == 30.0
    assert qs.from_env({"QUEUEJOB_CONFIG_RECHECK_INTERVAL": "1.5"}).config_recheck_interval == 1.5
    with pytest.raises(SettingsError, match="QUEUEJOB_CONFIG_RECHECK_INTERVAL"):
        qs.from_env({"QUEUEJOB_CONFIG_RECHECK_INTERVAL": "0"})
    with pytest.raises(SettingsError, match="QUEUEJOB_CONFIG_RECHECK_INTERVAL"):
        qs.from_env({"QUEUEJOB_CONFIG_RECHECK_INTERVAL": "soon"})


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        ("Handler 'observe' succeeded.", False),
        ("Handler 'job' succeeded.", False),
        ("Handler 'reconcile' succeeded.", True),
    ],
)
def test_per_run_timer_success_lines_are_dropped(message: str, kept: bool) -> None:
    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)
    assert _quiet_event_success(record) is kept
