"""Per-item processing time (lease to completion), recorded by the queue as a histogram.

Every completion adds its item's duration (completion time minus the lease time encoded in the
lease token, on the queue's clock) to the ``durations`` hash of the queue, inside the complete
script: one ``HINCRBY`` for the item's bucket and one for the sum, O(1) per item whatever the
queue's size. The hash holds, per bucket, the items whose duration is at most that bound and
above the previous one (field = the bound as written in :data:`BOUNDS`, ``+Inf`` past the last),
``sum_us``, the total in microseconds, and ``layout``, a constant text written by ``configure``
that keeps the hash in Redis' hashtable encoding (O(1) field access on the hot path).

Bounds: Prometheus' default buckets (5 ms to 10 s) extended by 30 s, 1, 2, 5, 10 and 30 minutes
and 1 hour, since items of a batch job often take minutes. ``scripts/lib.lua`` holds the same
list (``DURATION_FIELDS``; a test checks they match).

A re-sent completion (same token) is not counted twice; an item that ran several times counts
the attempt that completed it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

#: Upper bounds (seconds) of the buckets, as written in the hash's field names.
BOUND_FIELDS = (
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1",
    "2.5",
    "5",
    "10",
    "30",
    "60",
    "120",
    "300",
    "600",
    "1800",
    "3600",
)
BOUNDS = tuple(float(f) for f in BOUND_FIELDS)


class DurationHistogram(NamedTuple):
    """Counts per bucket (``counts[i]`` for ``BOUNDS[i]``, the last one for ``+Inf``; not
    cumulative) and the sum of all durations in seconds."""

    counts: tuple[int, ...]
    sum_seconds: float

    @classmethod
    def empty(cls) -> DurationHistogram:
        return cls((0,) * (len(BOUNDS) + 1), 0.0)

    @classmethod
    def from_redis(cls, raw: Mapping[str, str]) -> DurationHistogram:
        """Parse the ``durations`` hash (missing fields are 0; unknown fields are ignored)."""
        counts = tuple(int(raw.get(f, 0) or 0) for f in (*BOUND_FIELDS, "+Inf"))
        return cls(counts, int(raw.get("sum_us", 0) or 0) / 1e6)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, items at most that long)`` for every bucket, ``+Inf`` last (the
        form of a Prometheus histogram's ``_bucket`` series)."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*BOUNDS, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (0 < q < 1) estimated like Prometheus' ``histogram_quantile``:
        linear within the bucket holding it (from 0 for the first bucket); the last finite bound
        when it falls in ``+Inf``. None when nothing was recorded."""
        if not 0 < q < 1:
            raise ValueError(f"q must be in (0, 1), got {q}")
        total = self.total
        if total == 0:
            return None
        rank = q * total
        below = 0
        lower = 0.0
        for bound, n in zip(BOUNDS, self.counts, strict=False):
            if n and below + n >= rank:
                return lower + (bound - lower) * (rank - below) / n
            below += n
            lower = bound
        return BOUNDS[-1]

    def summary(self) -> dict[str, float | int]:
        """``{"count", "p50Seconds", "p95Seconds", "meanSeconds"}`` (only ``count`` while
        nothing was recorded): the form of a QueueJob's ``status.itemDuration``."""
        out: dict[str, float | int] = {"count": self.total}
        p50, p95 = self.quantile(0.5), self.quantile(0.95)
        if p50 is not None and p95 is not None:
            out["p50Seconds"] = round(p50, 3)
            out["p95Seconds"] = round(p95, 3)
            out["meanSeconds"] = round(self.sum_seconds / self.total, 3)
        return out
