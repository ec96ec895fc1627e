"""The coalescing queue: one entry per key, earliest due time wins, never two consumers."""

from __future__ import annotations

import asyncio

from workqueue.coalescing import CoalescingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_adds_gives_one_get() -> None:
    async def run() -> None:
        queue: CoalescingQueue[str] = CoalescingQueue()
        results = [queue.add("qj", 0.05) for _ in range(100)]
        assert results.count(True) == 1
        assert len(queue) == 1 and queue.coalesced == 99
        assert await queue.get() == "qj"
        assert len(queue) == 0 and queue.processing == 1
        queue.done("qj")
        assert len(queue) == 0 and queue.processing == 0

    asyncio.run(run())


def test_the_earliest_due_time_wins_and_order_is_by_due_time() -> None:
    clock = Clock()
    queue: CoalescingQueue[str] = CoalescingQueue(clock)
    queue.add("late", 10)
    queue.add("soon", 5)
    assert queue.add("late", 1)  # moved earlier
    assert not queue.add("late", 3)  # later than queued: coalesced
    assert queue.due_in("late") == 1
    clock.now += 6

    async def drain() -> list[str]:
        return [await queue.get(), await queue.get()]

    assert asyncio.run(drain()) == ["late", "soon"]


def test_nothing_comes_out_before_it_is_due() -> None:
    clock = Clock()
    queue: CoalescingQueue[str] = CoalescingQueue(clock)
    queue.add("qj", 60)

    async def try_get() -> bool:
        try:
            await asyncio.wait_for(queue.get(), 0.1)
        except TimeoutError:
            return False
        return True

    assert not asyncio.run(try_get())
    clock.now += 60
    assert asyncio.run(try_get())


def test_a_key_added_while_processed_comes_back_once_after_done() -> None:
    async def run() -> None:
        queue: CoalescingQueue[str] = CoalescingQueue()
        queue.add("qj")
        assert await queue.get() == "qj"
        for _ in range(10):
            queue.add("qj")
        assert len(queue) == 0  # not handed out again while processed
        queue.done("qj")
        assert len(queue) == 1
        assert await queue.get() == "qj"
        queue.done("qj")
        assert len(queue) == 0

    asyncio.run(run())


def test_forget_drops_a_queued_key() -> None:
    clock = Clock()
    queue: CoalescingQueue[str] = CoalescingQueue(clock)
    queue.add("gone", 0)
    queue.add("kept", 1)
    queue.forget("gone")
    queue.forget("unknown")
    clock.now += 1
    assert asyncio.run(queue.get()) == "kept"
    assert len(queue) == 0
