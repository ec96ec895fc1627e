"""Per-item exponential failure backoff (client-go ``ItemExponentialFailureRateLimiter``)."""

from __future__ import annotations

import random
import threading
from collections.abc import Hashable

from workqueue.backoff import Uniform, exponential_delay


class ItemExponentialFailureRateLimiter:
    """``when(item)`` = ``min(cap, base * 2**failures)`` (jitter: reduced by up to that fraction),
    then counts a failure; ``forget`` resets the item. The first ``when`` returns ``base``."""

    def __init__(
        self, base: float, cap: float, jitter: float = 0.0, rand: Uniform = random.random
    ) -> None:
        if not base > 0:
            raise ValueError(f"base must be > 0, got {base}")
        if not cap >= base:
            raise ValueError(f"cap ({cap}) must be >= base ({base})")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._rand = rand
        self._failures: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def when(self, item: Hashable) -> float:
        with self._lock:
            failures = self._failures.get(item, 0)
            self._failures[item] = failures + 1
            return self.delay_for(failures)

    def delay_for(self, failures: int) -> float:
        """The delay after ``failures`` previous failures, without recording anything
        (e.g. from kopf's persisted ``retry`` count, which survives operator restarts)."""
        return exponential_delay(failures, self.base, self.cap, self.jitter, self._rand)

    def forget(self, item: Hashable) -> None:
        with self._lock:
            self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        with self._lock:
            return self._failures.get(item, 0)
