"""Operator-level errors that decide how a handler failure is retried.

- :class:`ConfigError`: the QueueJob cannot work as specified (missing ConfigMap or Secret,
  invalid spec). Permanent: a condition ``ConfigError`` and a Warning Event, no retries.
- everything else raised by a handler (Redis down, API server errors) is temporary and retried
  with the operator's exponential, jittered backoff (see ``queuejob.limits``).
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem of one QueueJob; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
