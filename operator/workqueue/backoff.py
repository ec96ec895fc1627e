"""The one exponential-backoff formula, shared by the Redis queue and the in-process limiters.

``exponential_delay(n, base, cap, jitter)`` = ``min(cap, base * 2**n)`` reduced by a random
fraction of at most ``jitter`` of itself. Guarantees: the result is in
``[d * (1 - jitter), d]`` where ``d = min(cap, base * 2**n)``, so it never exceeds ``cap`` and,
with ``jitter=0``, is deterministic. ``n`` counts previous failures (0 for the first retry),
matching client-go's ``ItemExponentialFailureRateLimiter``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

#: A source of uniform random numbers in [0, 1), e.g. ``random.Random(7).random``.
Uniform = Callable[[], float]


def exponential_delay(
    n: int, base: float, cap: float, jitter: float = 0.0, rand: Uniform = random.random
) -> float:
    """Delay before retry number ``n + 1`` (see the module doc)."""
    if n < 0:
        raise ValueError(f"n (previous failures) must be >= 0, got {n}")
    # 2**n grows without bound; stop doubling once past the cap (also avoids float overflow).
    delay = cap if n >= 1024 else min(cap, base * (2.0**n))
    return apply_jitter(delay, jitter, rand)


def apply_jitter(
    delay: float, jitter: float, rand: Uniform = random.random, *, upward: bool = False
) -> float:
    """``delay`` changed by a random fraction in ``[0, jitter)`` of itself; jitter in [0, 1].

    Reduced by default (so a cap stays a cap); ``upward=True`` lengthens it instead (so a rate
    limit stays a limit), like client-go's ``wait.Jitter``.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [0, 1], got {jitter}")
    if jitter == 0.0 or delay <= 0.0:
        return delay
    if upward:
        return delay * (1.0 + jitter * rand())
    return delay * (1.0 - jitter * rand())
