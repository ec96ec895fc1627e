"""Fast-then-slow retries (client-go ``ItemFastSlowRateLimiter``)."""

from __future__ import annotations

import random
import threading
from collections.abc import Hashable

from workqueue.backoff import Uniform, apply_jitter


class ItemFastSlowRateLimiter:
    """The first ``max_fast_attempts`` calls of ``when(item)`` return ``fast``, later ones
    ``slow`` (each reduced by up to ``jitter`` of itself); ``forget`` resets the item."""

    def __init__(
        self,
        fast: float,
        slow: float,
        max_fast_attempts: int,
        jitter: float = 0.0,
        rand: Uniform = random.random,
    ) -> None:
        if fast < 0 or slow < 0:
            raise ValueError(f"fast ({fast}) and slow ({slow}) must be >= 0")
        if max_fast_attempts < 0:
            raise ValueError(f"max_fast_attempts must be >= 0, got {max_fast_attempts}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        self.fast = fast
        self.slow = slow
        self.max_fast_attempts = max_fast_attempts
        self.jitter = jitter
        self._rand = rand
        self._attempts: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def when(self, item: Hashable) -> float:
        with self._lock:
            attempts = self._attempts.get(item, 0) + 1
            self._attempts[item] = attempts
        delay = self.fast if attempts <= self.max_fast_attempts else self.slow
        return apply_jitter(delay, self.jitter, self._rand)

    def forget(self, item: Hashable) -> None:
        with self._lock:
            self._attempts.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        with self._lock:
            return self._attempts.get(item, 0)
