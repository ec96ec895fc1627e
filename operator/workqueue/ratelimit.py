"""A token bucket kept in Redis, shared by every process that uses the same key.

The queue's ``lease`` takes its tokens from the bucket ``wq:{name}:bucket`` inside the lease
script (``rate_qps``/``rate_burst`` of ``QueueConfig``), so all workers together stay under the
rate. :class:`SharedTokenBucket` exposes the same bucket logic (``bucket_take`` in
``scripts/lib.lua``) for any other key, e.g. to limit calls to an external service from many
pods.

Guarantees: a take is atomic (one Lua call); in any window of ``t`` seconds at most
``burst + qps * t`` tokens are granted across all clients; a clock going backwards refills
nothing. Time is Redis ``TIME`` unless a ``clock`` is given (then every client must use it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import redis

from workqueue.errors import translated
from workqueue.scripts import source


class SharedTokenBucket:
    """Token bucket ``key`` in Redis refilling at ``qps`` per second up to ``burst``."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        qps: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not qps > 0 or not math.isfinite(qps):
            raise ValueError(f"qps must be a finite number > 0, got {qps}")
        burst = max(1, math.ceil(qps)) if burst is None else burst
        if int(burst) != burst or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst}")
        self.client = client
        self.key = key
        self.qps = float(qps)
        self.burst = int(burst)
        self.clock = clock
        self._script = client.register_script(source("bucket"))

    def try_take(self, n: int = 1) -> tuple[int, float]:
        """Take up to ``n`` tokens now; returns (granted, seconds until the next token)."""
        stamp = "" if self.clock is None else repr(float(self.clock()))
        try:
            granted, wait_us = self._script(
                keys=[self.key], args=[stamp, repr(self.qps), self.burst, int(n)]
            )
        except redis.exceptions.RedisError as exc:
            raise translated(self.client, f"token bucket {self.key}", exc) from exc
        return int(granted), int(wait_us) / 1e6

    def take(self, n: int = 1, timeout: float = 10.0) -> int:
        """Take ``n`` tokens, sleeping as needed, within ``timeout`` seconds; returns how many
        were taken (fewer than ``n`` only when the timeout ran out)."""
        deadline = time.monotonic() + timeout
        taken = 0
        while taken < n:
            granted, wait = self.try_take(n - taken)
            taken += granted
            remaining = deadline - time.monotonic()
            if taken >= n or remaining <= 0:
                break
            time.sleep(min(max(wait, 0.001), remaining))
        return taken
