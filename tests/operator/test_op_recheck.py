"""The config re-check timer: which QueueJobs it runs for, its setting and registration."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest
from kopf._core.intents.handlers import TimerHandler

import queuejob.operator_main  # noqa: F401  (registers the handlers)
from queuejob import settings as qs
from queuejob.handlers.recheck import needs_config_recheck
from queuejob.handlers.startup import _quiet_timer_success
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


def test_timer_is_registered_with_the_filter_and_the_interval() -> None:
    handlers = {str(h.id): h for h in kopf.get_default_registry()._spawning.get_all_handlers()}
    timer = handlers["config-recheck"]
    assert isinstance(timer, TimerHandler)
    assert timer.when is needs_config_recheck
    interval = qs.from_env().config_recheck_interval
    assert timer.interval == interval
    # The first check waits one interval: no read right after the failure was reported.
    assert timer.initial_delay == interval


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
        ("Timer 'config-recheck' succeeded.", False),
        ("Timer 'refresh' succeeded.", False),
        ("Handler 'reconcile' succeeded.", True),
    ],
)
def test_per_run_timer_success_lines_are_dropped(message: str, kept: bool) -> None:
    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)
    assert _quiet_timer_success(record) is kept
