"""Settings of one queue (:class:`QueueConfig`), validated on construction.

A queue's config is stored in Redis (hash ``wq:{name}:config``) by ``LeaseQueue.configure`` so
that workers only need the queue name. The Lua scripts read ``lease_seconds``, ``max_attempts``
and the rate limit from that hash on every call (a reconfiguration takes effect at once); the
backoff parameters are used client-side by ``fail`` (see ``workqueue.backoff``) from the config
that the ``LeaseQueue`` loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from workqueue.errors import QueueConfigError


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Queue settings; every field is checked in ``__post_init__``.

    - ``lease_seconds``: default lease length (> 0).
    - ``max_attempts``: leases an item may get before it is dead-lettered (>= 1).
    - ``backoff_base`` / ``backoff_cap`` / ``backoff_jitter``: retry delay after a failure is
      ``min(cap, base * 2**(attempt-1))`` reduced by up to ``jitter`` (a fraction in [0, 1]).
    - ``rate_qps`` / ``rate_burst``: shared token bucket across all workers; ``rate_qps=None``
      means unlimited; ``rate_burst`` defaults to ``ceil(rate_qps)``.
    - ``max_item_bytes``: size limit of one item, UTF-8 encoded.
    """

    lease_seconds: float = 30.0
    max_attempts: int = 3
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    backoff_jitter: float = 0.2
    rate_qps: float | None = None
    rate_burst: int | None = None
    max_item_bytes: int = 4096

    def __post_init__(self) -> None:
        _finite_positive("lease_seconds", self.lease_seconds)
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise QueueConfigError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise QueueConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        _finite_positive("backoff_base", self.backoff_base)
        _finite_positive("backoff_cap", self.backoff_cap)
        if self.backoff_cap < self.backoff_base:
            raise QueueConfigError(
                f"backoff_cap ({self.backoff_cap}) must be >= backoff_base ({self.backoff_base})"
            )
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise QueueConfigError(f"backoff_jitter must be in [0, 1], got {self.backoff_jitter}")
        if self.rate_qps is not None:
            _finite_positive("rate_qps", self.rate_qps)
            if self.rate_burst is None:
                object.__setattr__(self, "rate_burst", max(1, math.ceil(self.rate_qps)))
        if self.rate_burst is not None:
            if self.rate_qps is None:
                raise QueueConfigError("rate_burst is set but rate_qps is not")
            if int(self.rate_burst) != self.rate_burst or self.rate_burst < 1:
                raise QueueConfigError(f"rate_burst must be an int >= 1, got {self.rate_burst}")
        if int(self.max_item_bytes) != self.max_item_bytes or self.max_item_bytes < 1:
            raise QueueConfigError(f"max_item_bytes must be an int >= 1, got {self.max_item_bytes}")

    def to_redis(self) -> dict[str, str]:
        """Field -> string mapping as stored in the config hash (unset rate = empty string)."""
        return {k: "" if v is None else repr(v) for k, v in asdict(self).items()}

    @classmethod
    def from_redis(cls, raw: Mapping[str, str]) -> QueueConfig:
        """Parse the config hash; missing fields take their defaults."""
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            value = raw.get(f.name)
            if value is None or value == "":
                continue
            try:
                kwargs[f.name] = int(value) if f.name in _INT_FIELDS else float(value)
            except ValueError as exc:
                raise QueueConfigError(
                    f"stored config field {f.name}={value!r} is not a number"
                ) from exc
        return cls(**kwargs)  # type: ignore[arg-type]


_INT_FIELDS = frozenset({"max_attempts", "rate_burst", "max_item_bytes"})


def _finite_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueueConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise QueueConfigError(f"{name} must be a finite number > 0, got {value}")
