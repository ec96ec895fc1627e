"""Operator-level errors that decide how a handler failure is retried.

- :class:`ConfigError`: the QueueJob cannot work as specified (missing ConfigMap or Secret,
  invalid spec). Permanent: a condition ``ConfigError`` and a Warning Event, no retries. Those
  with a reason in :data:`RECHECKED_REASONS` (a referenced object or key is missing or holds no
  valid items) can be fixed without touching the QueueJob, so a slow timer re-checks them
  (``queuejob.handlers.recheck``); the others need a spec change.
- everything else raised by a handler (Redis down, API server errors) is temporary and retried
  with the operator's exponential, jittered backoff (see ``queuejob.limits``).
"""

from __future__ import annotations

#: ConfigError reasons fixed by creating or editing another object (ConfigMap, Secret).
RECHECKED_REASONS = frozenset({"ConfigMapNotFound", "SecretNotFound", "InvalidItems"})

#: What the user must do for each re-checked reason (the end of the message).
_FIX = {
    "ConfigMapNotFound": "once the ConfigMap and its key exist",
    "SecretNotFound": "once the Secret and its key exist",
    "InvalidItems": "once the ConfigMap holds valid items",
}


class ConfigError(Exception):
    """A configuration problem of one QueueJob; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def user_message(self, recheck_seconds: float) -> str:
        """The message for the condition and the Event: for a reason the operator re-checks,
        it also says that the QueueJob starts by itself once the cause is fixed, and how often
        that is checked (``QUEUEJOB_CONFIG_RECHECK_INTERVAL``)."""
        fix = _FIX.get(self.reason)
        if fix is None:
            return self.message
        return (
            f"{self.message}. Checked again every {recheck_seconds:g}s: the QueueJob starts by "
            f"itself {fix}"
        )
