"""The worst of several limiters (client-go ``MaxOfRateLimiter``)."""

from __future__ import annotations

from collections.abc import Hashable

from workqueue.limiters.protocol import RateLimiter


class MaxOfRateLimiter:
    """``when`` asks every limiter (each records the requeue) and returns the longest delay;
    ``num_requeues`` is the largest count; ``forget`` forgets in all. client-go's default
    controller limiter is ``MaxOf(ItemExponentialFailure(5ms, 1000s), Bucket(10 qps, 100))``.
    """

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)
