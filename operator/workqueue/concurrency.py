"""An operator-wide limit on concurrent handler executions and on their start rate.

kopf's ``worker_limit`` bounds the workers of *each* watch stream separately; this limiter is
shared by every handler of every resource in the process. Use it from async kopf handlers::

    LIMITER = ConcurrencyLimiter(max_concurrent=10, qps=20, burst=40)

    @kopf.on.create("queuejobs")
    async def create(name: str, namespace: str, **_: Any) -> None:
        async with LIMITER.slot(f"{namespace}/{name}"):
            ...

or decorate a handler with ``@LIMITER.guard``.

Guarantees: at most ``max_concurrent`` slots are held at any time (``in_flight``;
``max_in_flight`` is the high-water mark); a freed slot goes to a waiter of
``slot(background=False)`` (change handlers) before any waiter of ``slot(background=True)``
(timers, refreshes), so background work never delays a change handler by more than the time it
takes a running slot to free up (background waiters wait as long as foreground ones keep
coming: that is the point). Within each priority, waiters are queued per *flow* (the ``flow``
argument, e.g. the namespace) by fair queuing with shuffle sharding
(:class:`~workqueue.fairqueue.FairQueues`): a flow with a thousand waiters takes one slot per
round like a flow with one, so it cannot hold another flow's waiter behind its backlog; within
one flow (and one queue), FIFO. ``flows()`` reports the waiting and running slots per flow. With
``qps``, slot
starts are spaced by a token bucket (at most ``burst + qps * t`` starts in any ``t`` seconds);
a cancelled waiter takes nothing. The limiter is not bound to an event loop (each waiter's
future belongs to the loop that awaits it), so one module-level instance serves kopf's loop.
It is meant for one thread's event loop at a time.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

from workqueue.fairqueue import FairQueues
from workqueue.limiters.tokenbucket import TokenBucket

P = ParamSpec("P")
R = TypeVar("R")


class ConcurrencyLimiter:
    """At most ``max_concurrent`` concurrent slots; optionally at most ``qps`` starts/s."""

    def __init__(
        self,
        max_concurrent: int,
        qps: float | None = None,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        queues: int = 64,
        hand_size: int = 4,
    ) -> None:
        if int(max_concurrent) != max_concurrent or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent}")
        if burst is not None and qps is None:
            raise ValueError("burst is set but qps is not")
        self.max_concurrent = int(max_concurrent)
        self.bucket: TokenBucket | None = None
        if qps is not None:
            self.bucket = TokenBucket(qps, burst if burst is not None else max(1, int(qps)), clock)
        self._in_flight = 0
        self._max_in_flight = 0
        self._started = 0
        self._waiters: FairQueues[asyncio.Future[None]] = FairQueues(queues, hand_size, _gone)
        self._background: FairQueues[asyncio.Future[None]] = FairQueues(queues, hand_size, _gone)
        self._live = {False: 0, True: 0}  # live waiters per priority (background?)
        self._flow_waiting: Counter[Hashable] = Counter()
        self._flow_running: Counter[Hashable] = Counter()
        self._keys: Counter[Hashable] = Counter()

    @property
    def in_flight(self) -> int:
        """Slots held right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most slots ever held at once (high-water mark)."""
        return self._max_in_flight

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot (foreground and background)."""
        return self._live[False] + self._live[True]

    @property
    def waiting_background(self) -> int:
        """Callers of ``slot(background=True)`` waiting for a slot."""
        return self._live[True]

    def flows(self) -> dict[Hashable, tuple[int, int]]:
        """(waiting, running) slots per flow that has any."""
        names = set(self._flow_waiting) | set(self._flow_running)
        return {f: (self._flow_waiting[f], self._flow_running[f]) for f in names}

    @property
    def started(self) -> int:
        """Slots granted so far."""
        return self._started

    def active_keys(self) -> list[Hashable]:
        """Keys of the slots held right now (a key may hold several)."""
        return list(self._keys.elements())

    @asynccontextmanager
    async def slot(
        self, key: Hashable = None, *, background: bool = False, flow: Hashable = ""
    ) -> AsyncIterator[None]:
        """Hold one slot for the block (waits for the rate limit first, then for a slot).

        ``background=True`` (periodic work such as timers) yields every freed slot to the
        foreground waiters first. ``flow`` names the fair-queuing flow (e.g. the namespace).
        """
        if self.bucket is not None:
            delay = self.bucket.reserve()
            if delay > 0:
                await asyncio.sleep(delay)
        await self._acquire(background, flow)
        self._keys[key] += 1
        self._flow_running[flow] += 1
        try:
            yield
        finally:
            self._keys[key] -= 1
            if self._keys[key] <= 0:
                del self._keys[key]
            self._flow_running[flow] -= 1
            if self._flow_running[flow] <= 0:
                del self._flow_running[flow]
            self._release()

    def guard(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate an async kopf handler so each call runs in a slot keyed ``namespace/name``."""
        if not asyncio.iscoroutinefunction(fn):
            raise TypeError(f"{fn!r} is not an async function; guard() needs an async handler")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = f"{kwargs.get('namespace') or ''}/{kwargs.get('name') or ''}"
            async with self.slot(key):
                return await fn(*args, **kwargs)

        return wrapper

    async def _acquire(self, background: bool, flow: Hashable) -> None:
        # A free slot is taken at once unless someone of at least this priority waits for one.
        ahead = self.waiting if background else self._live[False]
        if self._in_flight < self.max_concurrent and not ahead:
            self._grant()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queues = self._background if background else self._waiters
        index = queues.push(flow, fut)
        self._live[background] += 1
        self._flow_waiting[flow] += 1
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # The slot was handed to us just as we were cancelled: pass it on.
                self._release()
            else:
                queues.remove(index, flow, fut)
                self._unwait(background, flow)
            raise

    def _unwait(self, background: bool, flow: Hashable) -> None:
        self._live[background] -= 1
        self._flow_waiting[flow] -= 1
        if self._flow_waiting[flow] <= 0:
            del self._flow_waiting[flow]

    def _grant(self) -> None:
        self._in_flight += 1
        self._started += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _release(self) -> None:
        for background, waiters in ((False, self._waiters), (True, self._background)):
            found = waiters.pop()  # foreground first; skips cancelled waiters
            if found is not None:
                flow, fut = found
                self._unwait(background, flow)
                # Hand the slot over directly: in_flight stays the same.
                self._started += 1
                fut.set_result(None)
                return
        self._in_flight -= 1

    def __repr__(self) -> str:
        return (
            f"ConcurrencyLimiter(max_concurrent={self.max_concurrent}, "
            f"in_flight={self._in_flight}, max_in_flight={self._max_in_flight})"
        )


def _gone(fut: asyncio.Future[None]) -> bool:
    """A waiter that was cancelled (its place in a queue is dropped when reached)."""
    return fut.done()


__all__ = ["ConcurrencyLimiter"]
