"""Overall token-bucket limiter (client-go ``BucketRateLimiter``): the same bucket for all items."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable

from workqueue.backoff import Uniform, apply_jitter
from workqueue.limiters.tokenbucket import TokenBucket


class BucketRateLimiter:
    """``when`` reserves a token from one shared bucket (``qps``, ``burst``) and returns the wait;
    jitter lengthens the wait by up to that fraction (never shortens it, so the rate holds).
    Like client-go, it does not track items: ``num_requeues`` is 0 and ``forget`` does nothing.
    """

    def __init__(
        self,
        qps: float,
        burst: int,
        jitter: float = 0.0,
        rand: Uniform = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        self.bucket = TokenBucket(qps, burst, clock)
        self.jitter = jitter
        self._rand = rand

    def when(self, item: Hashable) -> float:
        return apply_jitter(self.bucket.reserve(), self.jitter, self._rand, upward=True)

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0
