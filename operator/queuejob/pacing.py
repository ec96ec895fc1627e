"""Adaptive resync intervals: idle QueueJobs are refreshed less and less often, and all resyncs
together start at most ``max_rate`` times per second.

The resync is the status refresh that runs without any event, the safety net for lost queue
notifications (``queuejob.refresher``). After each refresh of a QueueJob the refresher asks the
:class:`RefreshPacer` when the next resync is due (:meth:`RefreshPacer.wait`). Guarantees:

- a QueueJob never seen before, or whose ``resourceVersion`` changed since its last refresh
  (a spec change, a status patch by any handler), starts again from ``status_interval``;
- after a refresh that found something to do (a status change, an outstanding lease, a reaped
  lease), the next resync is one ``status_interval`` later;
- after an idle refresh (nothing changed, no lease outstanding), the gap doubles, up to the idle
  cap: ``idle_interval``, or ``n / max_rate`` seconds when ``n`` QueueJobs are paced and that is
  longer. So idle QueueJobs cost about ``min(n / idle_interval, max_rate)`` resyncs per second
  together once backed off (at most that divided by ``1 - jitter``): the cost stops growing
  with their number (a flat CPU at thousands of QueueJobs), and a lost notification of an idle
  QueueJob is seen within that cap;
- a refresh may name its own next time (e.g. when ``ttlSecondsAfterFinished`` falls due),
  within ``interval`` .. the idle cap;
- the configuration re-check of a QueueJob that failed for a missing object is due ``every``
  seconds after it was first asked for (:meth:`RefreshPacer.recheck_wait`), then ``every``
  seconds after each re-check (:meth:`RefreshPacer.rechecked`);
- with ``jitter`` j, a backed-off wait is shortened by a random fraction in [0, j), so QueueJobs
  that went idle together (e.g. created in one burst) do not keep refreshing in one wave;
- a resync that is due takes a turn (:meth:`RefreshPacer.admit`): at most ``max_rate`` turns
  per second, after a burst of one second's worth, however many resyncs come due at once (the
  first resyncs of thousands of QueueJobs created together). A resync that must wait for its
  turn runs that much later; refreshes for events or for a time a refresh named (a lease
  expiry, a TTL) take no turn and are never held back.

State is in memory only: after an operator restart every QueueJob starts at ``status_interval``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable

from workqueue.limiters.tokenbucket import TokenBucket


@dataclasses.dataclass
class _Pace:
    version: str
    gap: float
    due: float


class RefreshPacer:
    """When the next resync of each QueueJob is due (only used from the event loop)."""

    def __init__(
        self,
        interval: float,
        idle_interval: float,
        clock: Callable[[], float] = time.monotonic,
        jitter: float = 0.0,
        rand: Callable[[], float] = random.random,
        max_rate: float = 0.0,
    ) -> None:
        if interval <= 0 or idle_interval < interval:
            raise ValueError(f"need 0 < interval <= idle_interval, got {interval}, {idle_interval}")
        if not 0 <= jitter < 1:
            raise ValueError(f"need 0 <= jitter < 1, got {jitter}")
        if max_rate < 0:
            raise ValueError(f"need max_rate >= 0 (0 = no cap), got {max_rate}")
        self.interval = interval
        self.idle_interval = idle_interval
        self.jitter = jitter
        self.max_rate = max_rate
        self._clock = clock
        self._rand = rand
        self._rechecks: dict[str, float] = {}  # uid -> when its config re-check is due
        self._paces: dict[str, _Pace] = {}
        self._turns = (
            TokenBucket(max_rate, max(1, math.ceil(max_rate)), clock) if max_rate > 0 else None
        )

    def __len__(self) -> int:
        return len(self._paces)

    @property
    def idle_cap(self) -> float:
        """The longest gap of an idle QueueJob now: ``idle_interval``, or longer when more than
        ``max_rate * idle_interval`` QueueJobs are paced."""
        if self.max_rate <= 0:
            return self.idle_interval
        return max(self.idle_interval, len(self._paces) / self.max_rate)

    def due(self, uid: str, version: str) -> bool:
        """True if a resync of ``uid`` (now at ``resourceVersion`` ``version``) is due."""
        pace = self._paces.get(uid)
        if pace is None or pace.version != version:
            return True
        return self._clock() >= pace.due

    def wait(self, uid: str) -> float:
        """Seconds until the next resync of ``uid`` is due (0: due now or unknown)."""
        pace = self._paces.get(uid)
        return 0.0 if pace is None else max(0.0, pace.due - self._clock())

    def gap(self, uid: str) -> float:
        """The current gap between resyncs of ``uid`` (``interval`` if unknown)."""
        pace = self._paces.get(uid)
        return self.interval if pace is None else pace.gap

    def ran(self, uid: str, version: str, *, idle: bool, next_in: float | None = None) -> None:
        """Record a refresh of ``uid`` at ``version``: back off if ``idle``, else reset.

        ``next_in`` (seconds) replaces the computed gap for the next resync only, within
        ``interval`` .. the idle cap.
        """
        previous = self._paces.get(uid)
        if previous is not None and previous.version != version:
            previous = None  # the object changed: back off from the start again
        if previous is None:
            self._paces[uid] = _Pace(version, self.interval, 0.0)  # counted in the cap
        cap = self.idle_cap
        gap = min(cap, 2 * previous.gap) if idle and previous else self.interval
        if idle and previous is None:
            gap = min(cap, 2 * self.interval)
        if next_in is not None:
            wait = min(cap, max(self.interval, next_in))
        elif gap > self.interval:
            wait = max(self.interval, gap * (1 - self.jitter * self._rand()))
        else:
            wait = gap
        self._paces[uid] = _Pace(version, gap, self._clock() + wait)

    def admit(self) -> float:
        """Take the turn of one resync that is due now: the seconds it must still wait so that
        at most ``max_rate`` resyncs start per second (0: run now; always 0 without a cap).
        A turn is taken even if the resync then never runs (an event refreshed it first)."""
        return 0.0 if self._turns is None else self._turns.reserve()

    def recheck_wait(self, uid: str, every: float) -> float:
        """Seconds until the configuration re-check of ``uid`` is due (0: now); the first
        one is due ``every`` seconds after this is first asked."""
        now = self._clock()
        return max(0.0, self._rechecks.setdefault(uid, now + every) - now)

    def rechecked(self, uid: str, every: float) -> None:
        """A re-check of ``uid`` ran: the next one is due in ``every`` seconds."""
        self._rechecks[uid] = self._clock() + every

    def recheck_over(self, uid: str) -> None:
        """``uid`` needs no re-check any more (resolved, or it failed for another reason)."""
        self._rechecks.pop(uid, None)

    def forget(self, uid: str) -> None:
        """Drop the state of a deleted or finished QueueJob."""
        self._paces.pop(uid, None)
        self._rechecks.pop(uid, None)
