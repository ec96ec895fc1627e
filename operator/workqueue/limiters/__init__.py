"""Rate limiters with the semantics of client-go's ``util/workqueue``, for kopf handlers.

Each has ``when(item) -> seconds``, ``forget(item)`` and ``num_requeues(item)`` and an optional
``jitter`` (see ``workqueue.backoff``). All are thread-safe (sync kopf handlers run in threads).
Typical use in a handler::

    delay = LIMITER.when(f"{namespace}/{name}")
    raise kopf.TemporaryError("not ready", delay=delay)
    ...
    LIMITER.forget(f"{namespace}/{name}")  # on success
"""

from workqueue.limiters.bucket import BucketRateLimiter
from workqueue.limiters.exponential import ItemExponentialFailureRateLimiter
from workqueue.limiters.fastslow import ItemFastSlowRateLimiter
from workqueue.limiters.maxof import MaxOfRateLimiter
from workqueue.limiters.protocol import RateLimiter
from workqueue.limiters.tokenbucket import TokenBucket

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "ItemFastSlowRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "TokenBucket",
]
