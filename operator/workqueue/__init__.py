"""workqueue: the work-queue pattern's two queues, written for this project.

- Data plane: :class:`~workqueue.redisqueue.LeaseQueue`, a reliable Redis lease queue (atomic Lua
  scripts, lease tokens, retries with backoff, dead letters, reaping, shared rate limit) and
  :class:`~workqueue.baseline.DocsWorkQueue`, the Kubernetes docs' algorithm kept as the
  benchmark baseline.
- Control plane: client-go-style rate limiters (:mod:`workqueue.limiters`) and an operator-wide
  :class:`~workqueue.concurrency.ConcurrencyLimiter` for kopf handlers.
"""

from workqueue.concurrency import ConcurrencyLimiter
from workqueue.config import QueueConfig
from workqueue.errors import (
    ItemError,
    QueueAuthError,
    QueueConfigError,
    QueueError,
    QueueTypeError,
    QueueUnavailableError,
    StaleLeaseError,
)
from workqueue.models import (
    AddResult,
    DeadLetter,
    DeadLetterPage,
    FailResult,
    Handoff,
    InFlight,
    Lease,
    LeaseInfo,
    LeasePage,
    QueueStats,
    RedriveResult,
)
from workqueue.ratelimit import SharedTokenBucket
from workqueue.redisqueue import LeaseQueue

__all__ = [
    "AddResult",
    "ConcurrencyLimiter",
    "DeadLetter",
    "DeadLetterPage",
    "FailResult",
    "Handoff",
    "InFlight",
    "ItemError",
    "Lease",
    "LeaseInfo",
    "LeasePage",
    "LeaseQueue",
    "QueueAuthError",
    "QueueConfig",
    "QueueConfigError",
    "QueueError",
    "QueueStats",
    "QueueTypeError",
    "QueueUnavailableError",
    "RedriveResult",
    "SharedTokenBucket",
    "StaleLeaseError",
]
