"""Per-item processing time (lease to completion), recorded as a histogram in the queue.

An item's duration is the completing call's time minus the lease time encoded in the lease
token, both on the queue's clock (Redis' ``TIME``, or the caller's ``clock=``): the same value
whoever computes it, and worker clocks do not matter. Most completions are counted by the
worker itself: the reply of each worker call carries the call's time (``now_us``), and
:class:`DurationAccumulator` adds the durations of the items it completed to a histogram of its
own, with the same buckets. The worker sends that histogram to the ``durations`` hash with one
of its calls at most about once a second (:data:`FLUSH_SECONDS`), when a lease finds nothing
(the worker goes idle) and on ``LeaseQueue.close()``; the call that sends it also records its
own completions in Redis (``scripts/lib.lua``: ``add_durations``). So the per-call server path
does no duration work except about once a second per worker.

Guarantee: durations are metrics, items never depend on them. A worker that dies without
closing its queue loses the durations it had not sent: those of about the last second of its
completions (a worker slower than one call a second sends them with every call and loses
none). A worker call whose reply is lost (connection error) loses the durations it carried. A
sent histogram is never counted twice.

The hash holds, per bucket, the items whose duration is at most that bound and
above the previous one (field = the bound as written in :data:`BOUNDS`, ``+Inf`` past the last),
``sum_us``, the total in microseconds, and ``layout``, a constant text written by ``configure``
that keeps the hash in Redis' hashtable encoding (O(1) field access on the hot path).

Bounds: Prometheus' default buckets (5 ms to 10 s) extended by 30 s, 1, 2, 5, 10 and 30 minutes
and 1 hour, since items of a batch job often take minutes. ``scripts/lib.lua`` holds the same
bucket choice (``duration_field``; a test checks they match).

A re-sent completion (same token) is not counted twice; an item that ran several times counts
the attempt that completed it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

#: Seconds between two sends of a worker's histogram (see the module doc).
FLUSH_SECONDS = 1.0

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
#: The bounds in microseconds (durations are whole microseconds).
BOUNDS_US = tuple(round(b * 1_000_000) for b in BOUNDS)
_FIELDS = (*BOUND_FIELDS, "+Inf")
#: The lease time (ms) in a lease token, as ``scripts/lib.lua`` reads it.
_LEASED_MS = re.compile(r"@(\d+)\.")


class DurationAccumulator:
    """A worker's histogram of the durations it has not sent to Redis yet (thread-safe).

    :meth:`add` counts completed leases from a reply's ``now_us`` (O(1) per item: one regex
    match, one bisection); :meth:`take` returns the durations block of a worker call's
    arguments (``scripts/lib.lua``: ``add_durations``) and empties the histogram.
    """

    def __init__(
        self, interval: float = FLUSH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._counts = [0] * len(_FIELDS)
        self._sum_us = 0
        self._pending = 0
        self._sent_at = -math.inf
        #: Histograms sent so far (:meth:`take` calls that returned a block with counts).
        self.flushes = 0

    @property
    def pending(self) -> int:
        """Items counted here and not sent yet."""
        return self._pending

    def add(self, now_us: int, tokens: Iterable[str]) -> None:
        """Count the leases of ``tokens`` completed at ``now_us`` (queue clock); tokens without
        a lease time are skipped, as the script does."""
        found = []
        for token in tokens:
            match = _LEASED_MS.search(token)
            if match:
                found.append(max(now_us - int(match.group(1)) * 1000, 0))
        if not found:
            return
        with self._lock:
            for us in found:
                self._counts[bisect_left(BOUNDS_US, us)] += 1
                self._sum_us += us
            self._pending += len(found)

    def take(self, *, completing: bool = False, force: bool = False) -> list[str] | None:
        """The durations block for a worker call, or None for ``''`` (not due: the caller
        passes the call's completions to :meth:`add` after the reply).

        Due when :attr:`interval` has passed since the last block and there is something to
        record (counts here, or ``completing``: the call completes items, which it then records
        in Redis itself); ``force``: whenever counts are pending. A block is ``[n, field,
        increment, ...]`` with ``sum_us`` last; the counts leave this histogram.
        """
        with self._lock:
            now = self._clock()
            if force:
                if not self._pending:
                    return None
            elif now - self._sent_at < self.interval or not (self._pending or completing):
                return None
            block: list[str] = []
            if self._pending:
                for field, count in zip(_FIELDS, self._counts, strict=True):
                    if count:
                        block += (field, str(count))
                block += ("sum_us", str(self._sum_us))
                self._counts = [0] * len(_FIELDS)
                self._sum_us = 0
                self._pending = 0
                self.flushes += 1
            self._sent_at = now
            return [str(len(block) // 2), *block]


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
