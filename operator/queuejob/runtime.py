"""The operator's process-wide state, built once at startup and shared by all handlers.

kopf hands it to every handler as ``memo.runtime`` (see ``handlers/startup.py``). It holds the
settings, the metrics, the operator-wide concurrency/QPS limiter, the handler backoff limiter and
the per-object bookkeeping used to observe kopf's per-object serialization.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict

from workqueue.concurrency import ConcurrencyLimiter

from queuejob.metrics import Metrics
from queuejob.settings import OperatorSettings
from workqueue.limiters import ItemExponentialFailureRateLimiter


@dataclasses.dataclass
class Runtime:
    """Shared operator state; only touched from the event loop (no locking needed)."""

    settings: OperatorSettings
    metrics: Metrics
    limiter: ConcurrencyLimiter
    backoff: ItemExponentialFailureRateLimiter
    #: change handlers entered (before the object lock) per QueueJob uid: kopf's serialization
    object_changing: defaultdict[str, int] = dataclasses.field(
        default_factory=lambda: defaultdict(int)
    )
    #: handlers holding the object lock per QueueJob uid (at most 1 by construction)
    object_running: defaultdict[str, int] = dataclasses.field(
        default_factory=lambda: defaultdict(int)
    )
    #: per-QueueJob locks that keep timers from interleaving with change handlers
    object_locks: defaultdict[str, asyncio.Lock] = dataclasses.field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )

    @classmethod
    def build(cls, settings: OperatorSettings) -> Runtime:
        """Runtime for ``settings`` (metrics are not served yet: see :meth:`Metrics.serve`)."""
        qps = settings.handler_qps or None
        burst = (settings.handler_burst or None) if qps else None
        return cls(
            settings=settings,
            metrics=Metrics(settings.max_concurrent_handlers),
            limiter=ConcurrencyLimiter(settings.max_concurrent_handlers, qps=qps, burst=burst),
            backoff=ItemExponentialFailureRateLimiter(
                settings.backoff_base, settings.backoff_cap, jitter=settings.backoff_jitter
            ),
        )

    def forget_object(self, uid: str) -> None:
        """Drop the bookkeeping of a deleted QueueJob."""
        if not self.object_changing.get(uid) and not self.object_running.get(uid):
            self.object_changing.pop(uid, None)
            self.object_running.pop(uid, None)
            lock = self.object_locks.get(uid)
            if lock is not None and not lock.locked():
                self.object_locks.pop(uid, None)
