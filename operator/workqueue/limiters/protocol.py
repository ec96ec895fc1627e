"""The rate-limiter interface (client-go ``workqueue.TypedRateLimiter``)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol, runtime_checkable


@runtime_checkable
class RateLimiter(Protocol):
    """How long an item should wait before it is processed again."""

    def when(self, item: Hashable) -> float:
        """Seconds to wait before processing ``item`` again (records a requeue)."""
        ...

    def forget(self, item: Hashable) -> None:
        """Stop tracking ``item`` (call it once the item succeeded)."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many times ``when`` was called for ``item`` since it was last forgotten."""
        ...
