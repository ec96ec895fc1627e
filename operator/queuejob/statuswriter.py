"""Accumulate status changes of one handler run into kopf's patch, with an Event per phase change.

A :class:`StatusWriter` reads the current status, lets a handler set the phase, conditions and
fields, and writes only what differs into ``patch.status`` (kopf applies the patch after the
handler, also when it raises). Every phase change posts a Kubernetes Event on the QueueJob
(Normal, or Warning for Failed) and counts in ``queuejob_phase_changes_total``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from queuejob import conditions
from queuejob.metrics import Metrics

#: Phases of a QueueJob, in life-cycle order.
PHASES = ("Pending", "Running", "Suspended", "Succeeded", "Failed")
FINISHED = ("Succeeded", "Failed")


class StatusWriter:
    """Status changes of one handler run for one QueueJob."""

    def __init__(
        self,
        body: kopf.Body,
        status: Mapping[str, Any],
        patch: kopf.Patch,
        logger: kopf.Logger | Any,
        metrics: Metrics | None = None,
    ) -> None:
        self._body = body
        self._status = status
        self._patch = patch
        self._logger = logger
        self._metrics = metrics
        self._conditions: list[dict[str, Any]] = [dict(c) for c in status.get("conditions") or []]

    @property
    def phase(self) -> str | None:
        """The phase after this run's changes."""
        value = self._patch.status.get("phase", self._status.get("phase"))
        return None if value is None else str(value)

    @property
    def status_patch(self) -> Mapping[str, Any]:
        """The status fields this run changed so far (what its patch will write)."""
        return self._patch.status

    def get(self, field: str) -> Any:
        """A status field after this run's changes."""
        return self._patch.status.get(field, self._status.get(field))

    def set(self, field: str, value: Any) -> None:
        """Set a status field if it differs from the current value."""
        if self._status.get(field) != value or field in self._patch.status:
            self._patch.status[field] = value

    def condition(self, type_: str, status: bool, reason: str, message: str) -> None:
        """Set a condition (lastTransitionTime kept unless ``status`` flips)."""
        updated = conditions.set_condition(self._conditions, type_, status, reason, message)
        if updated != self._conditions:
            self._conditions = updated
            self._patch.status["conditions"] = updated

    def has_condition(self, type_: str) -> bool:
        """True if the condition is currently True."""
        return conditions.is_true(self._conditions, type_)

    def get_condition(self, type_: str) -> Mapping[str, Any] | None:
        """The condition of that type after this run's changes, or None."""
        return conditions.get_condition(self._conditions, type_)

    def suspended(self, message: str) -> None:
        """Record a suspended Job: Suspended=True, Running=False, phase Suspended (``message``)."""
        self.condition("Suspended", True, "SpecSuspended", "spec.suspend is true")
        self.condition("Running", False, "Suspended", "the Job is suspended")
        self.phase_to("Suspended", "Suspended", message)

    def phase_to(self, phase: str, reason: str, message: str) -> None:
        """Move to ``phase``; on a change, log it and post an Event."""
        assert phase in PHASES, phase
        if self.phase == phase:
            return
        previous = self.phase or "None"
        self._patch.status["phase"] = phase
        kind = "Warning" if phase == "Failed" else "Normal"
        text = f"Phase {previous} -> {phase}: {message}"
        self._logger.info(text)
        kopf.event(self._body, type=kind, reason=reason, message=text)
        if self._metrics is not None:
            self._metrics.phase_changes.labels(phase).inc()
