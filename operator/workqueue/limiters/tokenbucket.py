"""An in-process token bucket with reservations (the model of golang.org/x/time/rate).

``reserve()`` always takes one token, letting the balance go negative, and returns how long the
caller must wait for that token: with ``qps`` and ``burst``, at most ``burst + qps * t`` calls
are admitted in any window of ``t`` seconds. The Redis-shared variant is
``workqueue.ratelimit.SharedTokenBucket``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Refills at ``qps`` tokens/s up to ``burst``; starts full."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not qps > 0:
            raise ValueError(f"qps must be > 0, got {qps}")
        if int(burst) != burst or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst}")
        self.qps = float(qps)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now

    def reserve(self) -> float:
        """Take a token; seconds until it is really available (0 = now)."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def tokens(self) -> float:
        """Current balance (negative while reservations are outstanding)."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens
