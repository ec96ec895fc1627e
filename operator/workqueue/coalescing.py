"""A delaying, deduplicating queue of keys: client-go's workqueue with ``AddAfter``, in asyncio.

Producers :meth:`~CoalescingQueue.add` a key, now or after a delay; consumers take keys with
:meth:`~CoalescingQueue.get` and hand them back with :meth:`~CoalescingQueue.done`. Guarantees:

- a key is queued at most once: adding a key that is already queued keeps the earlier of the
  two due times, so any number of adds before the key is due give one :meth:`get` (adding with
  a delay is how a burst of notifications coalesces into one piece of work);
- a key is never handed to two consumers at once: a key added while it is being processed is
  queued again, at its due time, only when :meth:`done` is called for it;
- keys come out in order of due time (ties: in order of adding), and never before they are due;
- :meth:`forget` drops a queued key (a deleted object); it is a no-op for unknown keys.

Only for one event loop (not thread-safe). The clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class CoalescingQueue(Generic[K]):
    """Keys due at a time, each queued at most once (see the module doc)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._processing: set[K] = set()
        self._again: dict[K, float] = {}
        self._wake: asyncio.Event | None = None
        self.adds = 0
        self.coalesced = 0

    def __len__(self) -> int:
        """Keys queued (due or not), not counting those being processed."""
        return len(self._due)

    @property
    def processing(self) -> int:
        """Keys handed out by :meth:`get` and not yet :meth:`done`."""
        return len(self._processing)

    def due_in(self, key: K) -> float | None:
        """Seconds until ``key`` is due (negative: overdue), or None if it is not queued."""
        due = self._due.get(key, self._again.get(key))
        return None if due is None else due - self._clock()

    def add(self, key: K, delay: float = 0.0) -> bool:
        """Queue ``key`` to be due in ``delay`` seconds (or sooner if it already is).

        Returns True if this call queued the key or moved it earlier, False if it coalesced
        into an add that is due no later.
        """
        self.adds += 1
        due = self._clock() + max(0.0, delay)
        if key in self._processing:
            current = self._again.get(key)
            if current is not None and current <= due:
                self.coalesced += 1
                return False
            self._again[key] = due
            return True
        current = self._due.get(key)
        if current is not None and current <= due:
            self.coalesced += 1
            return False
        self._schedule(key, due)
        return True

    def _schedule(self, key: K, due: float) -> None:
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        if self._wake is not None:
            self._wake.set()

    def forget(self, key: K) -> None:
        """Drop ``key`` from the queue (a later :meth:`add` queues it again)."""
        self._due.pop(key, None)
        self._again.pop(key, None)

    def _head(self) -> tuple[float, K] | None:
        """The earliest live entry, dropping entries superseded by a later add or forget."""
        while self._heap:
            due, _, key = self._heap[0]
            if self._due.get(key) == due:
                return due, key
            heapq.heappop(self._heap)
        return None

    async def get(self) -> K:
        """Wait for the next due key and mark it as being processed."""
        if self._wake is None:
            self._wake = asyncio.Event()
        while True:
            head = self._head()
            wait: float | None = None
            if head is not None:
                due, key = head
                wait = due - self._clock()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    del self._due[key]
                    self._processing.add(key)
                    return key
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def done(self, key: K) -> None:
        """``key`` is processed; if it was added meanwhile, queue it again at that due time."""
        self._processing.discard(key)
        due = self._again.pop(key, None)
        if due is not None:
            current = self._due.get(key)
            if current is None or due < current:
                self._schedule(key, due)


__all__ = ["CoalescingQueue"]
