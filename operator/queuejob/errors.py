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


class ConfigError(Exception):
    """A configuration problem of one QueueJob; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
