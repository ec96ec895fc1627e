"""The operator's process-wide state, built once at startup and shared by all handlers.

kopf hands it to every handler as ``memo.runtime`` (see ``handlers/startup.py``). It holds the
settings, the metrics, the operator-wide concurrency/QPS limiter, the handler backoff limiter, the
status-refresh pacer, the autoscaler's stabilizer, the cache of the worker Jobs and the per-object
bookkeeping used to observe kopf's per-object serialization.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict

from queuejob.autoscaler import Stabilizer
from queuejob.jobcache import JobCache
from queuejob.metrics import Metrics
from queuejob.pacing import RefreshPacer
from queuejob.refresher import Refresher
from queuejob.settings import OperatorSettings
from workqueue.concurrency import ConcurrencyLimiter
from workqueue.limiters import ItemExponentialFailureRateLimiter


@dataclasses.dataclass
class Runtime:
    """Shared operator state; only touched from the event loop (no locking needed)."""

    settings: OperatorSettings
    metrics: Metrics
    limiter: ConcurrencyLimiter
    backoff: ItemExponentialFailureRateLimiter
    #: when each QueueJob's next status refresh is due (idle ones back off)
    pacer: RefreshPacer
    #: change handlers entered (before the object lock) per QueueJob uid: kopf's serialization
    object_changing: defaultdict[str, int] = dataclasses.field(
        default_factory=lambda: defaultdict(int)
    )
    #: handlers holding the object lock per QueueJob uid (at most 1 by construction)
    object_running: defaultdict[str, int] = dataclasses.field(
        default_factory=lambda: defaultdict(int)
    )
    #: handlers entered and not yet left per QueueJob uid (waiting or running)
    object_users: defaultdict[str, int] = dataclasses.field(
        default_factory=lambda: defaultdict(int)
    )
    #: per-QueueJob locks that keep timers from interleaving with change handlers
    object_locks: defaultdict[str, asyncio.Lock] = dataclasses.field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    #: recent worker-count recommendations of autoscaled QueueJobs (downscale stabilization)
    stabilizer: Stabilizer = dataclasses.field(default_factory=Stabilizer)
    #: event-driven status refreshes (started by the operator's startup handler)
    refresher: Refresher | None = None
    #: the worker Jobs as their watch shows them (read by refreshes instead of a GET)
    jobs: JobCache = dataclasses.field(default_factory=JobCache)

    @classmethod
    def build(cls, settings: OperatorSettings, metrics: Metrics | None = None) -> Runtime:
        """Runtime for ``settings`` with ``metrics`` (default: new ones, not served yet)."""
        qps = settings.handler_qps or None
        burst = (settings.handler_burst or None) if qps else None
        return cls(
            settings=settings,
            metrics=metrics or Metrics(settings.max_concurrent_handlers),
            limiter=ConcurrencyLimiter(settings.max_concurrent_handlers, qps=qps, burst=burst),
            backoff=ItemExponentialFailureRateLimiter(
                settings.backoff_base, settings.backoff_cap, jitter=settings.backoff_jitter
            ),
            pacer=RefreshPacer(
                settings.status_interval,
                settings.status_idle_interval,
                jitter=0.2,
                max_rate=settings.resync_rate,
            ),
        )

    def forget_object(self, uid: str) -> None:
        """Drop a QueueJob's bookkeeping once no handler of it is waiting or running.

        Safe because every user counts itself in ``object_users`` before awaiting the lock and
        all of this runs on the event loop's thread.
        """
        if not self.object_users.get(uid):
            for table in (self.object_users, self.object_changing, self.object_running):
                table.pop(uid, None)
            self.object_locks.pop(uid, None)
