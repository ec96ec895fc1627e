"""Adaptive status-refresh intervals: idle QueueJobs are refreshed less and less often.

kopf ticks the refresh timer of every QueueJob every ``status_interval`` seconds; the
:class:`RefreshPacer` decides, before the handler takes the object lock or a concurrency slot,
whether this tick does the work. Guarantees:

- a QueueJob never seen before, or whose ``resourceVersion`` changed since its last refresh
  (a spec change, a status patch by any handler), is refreshed at this tick, and its backoff
  starts again from ``status_interval``;
- after a refresh that found something to do (a status change, an outstanding lease, a reaped
  lease), the next refresh is one ``status_interval`` later;
- after an idle refresh (nothing changed, no lease outstanding), the gap doubles, up to
  ``idle_interval``; so an idle QueueJob costs at most ``1 / idle_interval`` refreshes per second
  once backed off, and its status lags a change in Redis by at most ``idle_interval``;
- a refresh may name its own next time (e.g. when ``ttlSecondsAfterFinished`` falls due);
- with ``jitter`` j, a backed-off wait is shortened by a random fraction in [0, j), so QueueJobs
  that went idle together (e.g. created in one burst) do not keep refreshing in one wave.

Ticks are ``status_interval`` apart, so a refresh due within half a tick runs at this tick.
State is in memory only: after an operator restart every QueueJob starts at ``status_interval``.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable


@dataclasses.dataclass
class _Pace:
    version: str
    gap: float
    due: float


class RefreshPacer:
    """When the next status refresh of each QueueJob is due (only used from the event loop)."""

    def __init__(
        self,
        interval: float,
        idle_interval: float,
        clock: Callable[[], float] = time.monotonic,
        jitter: float = 0.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if interval <= 0 or idle_interval < interval:
            raise ValueError(f"need 0 < interval <= idle_interval, got {interval}, {idle_interval}")
        if not 0 <= jitter < 1:
            raise ValueError(f"need 0 <= jitter < 1, got {jitter}")
        self.interval = interval
        self.idle_interval = idle_interval
        self.jitter = jitter
        self._clock = clock
        self._rand = rand
        self._paces: dict[str, _Pace] = {}

    def __len__(self) -> int:
        return len(self._paces)

    def due(self, uid: str, version: str) -> bool:
        """True if the refresh of ``uid`` (now at ``resourceVersion`` ``version``) runs now."""
        pace = self._paces.get(uid)
        if pace is None or pace.version != version:
            return True
        return self._clock() + self.interval / 2 >= pace.due

    def gap(self, uid: str) -> float:
        """The current gap between refreshes of ``uid`` (``interval`` if unknown)."""
        pace = self._paces.get(uid)
        return self.interval if pace is None else pace.gap

    def ran(self, uid: str, version: str, *, idle: bool, next_in: float | None = None) -> None:
        """Record a refresh of ``uid`` at ``version``: back off if ``idle``, else reset.

        ``next_in`` (seconds) replaces the computed gap for the next refresh only, within
        ``interval`` .. ``idle_interval``.
        """
        previous = self._paces.get(uid)
        if previous is not None and previous.version != version:
            previous = None  # the object changed: back off from the start again
        gap = min(self.idle_interval, 2 * previous.gap) if idle and previous else self.interval
        if idle and previous is None:
            gap = min(self.idle_interval, 2 * self.interval)
        if next_in is not None:
            wait = min(self.idle_interval, max(self.interval, next_in))
        elif gap > self.interval:
            wait = max(self.interval, gap * (1 - self.jitter * self._rand()))
        else:
            wait = gap
        self._paces[uid] = _Pace(version, gap, self._clock() + wait)

    def forget(self, uid: str) -> None:
        """Drop the state of a deleted or finished QueueJob."""
        self._paces.pop(uid, None)
