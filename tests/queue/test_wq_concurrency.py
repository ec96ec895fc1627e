"""The operator-wide ConcurrencyLimiter: never above max, high-water mark, rate, cancellation,
foreground before background."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from workqueue.concurrency import ConcurrencyLimiter

pytestmark = pytest.mark.timeout(30)


def test_never_above_max_and_high_water_mark_equals_max() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=4)
    seen: list[int] = []

    async def task(i: int) -> None:
        async with limiter.slot(f"ns/obj-{i}"):
            seen.append(limiter.in_flight)
            assert len(limiter.active_keys()) <= limiter.in_flight  # handed-over slots count
            await asyncio.sleep(0.01 * (i % 3))

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(40)))

    asyncio.run(main())
    assert max(seen) == 4
    assert all(1 <= n <= 4 for n in seen)
    assert limiter.max_in_flight == 4
    assert limiter.in_flight == 0
    assert limiter.started == 40


def test_one_limiter_spans_all_handlers_and_event_loops() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=2)

    @limiter.guard
    async def on_create(name: str, namespace: str, **_: Any) -> str:
        await asyncio.sleep(0.01)
        return f"{namespace}/{name}"

    @limiter.guard
    async def on_update(name: str, namespace: str, **_: Any) -> str:
        await asyncio.sleep(0.01)
        return name

    async def main() -> list[str]:
        calls = [on_create(name=f"a{i}", namespace="x") for i in range(5)]
        calls += [on_update(name=f"b{i}", namespace="y") for i in range(5)]
        return list(await asyncio.gather(*calls))

    assert asyncio.run(main())[0] == "x/a0"
    assert asyncio.run(main())[-1] == "b4"  # a second event loop works too
    assert limiter.max_in_flight == 2
    with pytest.raises(TypeError, match="async"):
        limiter.guard(lambda: None)  # type: ignore[arg-type]


def test_cancelled_waiter_takes_no_slot() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=1)

    async def main() -> None:
        release = asyncio.Event()

        async def holder() -> None:
            async with limiter.slot("holder"):
                await release.wait()

        async def waiter() -> None:
            async with limiter.slot("waiter"):
                pass

        h = asyncio.create_task(holder())
        await asyncio.sleep(0)
        w = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        assert limiter.waiting == 1
        w.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w
        release.set()
        await h
        assert limiter.in_flight == 0
        async with limiter.slot("next"):
            assert limiter.in_flight == 1

    asyncio.run(main())


def test_qps_spaces_starts() -> None:
    now = [0.0]
    limiter = ConcurrencyLimiter(max_concurrent=10, qps=100, burst=2, clock=lambda: now[0])
    assert limiter.bucket is not None
    delays = [limiter.bucket.reserve() for _ in range(4)]
    assert delays == [0, 0, 0.01, 0.02]

    async def main() -> None:
        for _ in range(3):
            async with limiter.slot():
                pass

    asyncio.run(main())
    assert limiter.started == 3
    with pytest.raises(ValueError, match="max_concurrent"):
        ConcurrencyLimiter(0)


def test_a_freed_slot_goes_to_foreground_waiters_before_background_ones() -> None:
    limiter = ConcurrencyLimiter(max_concurrent=1)
    order: list[str] = []

    async def take(name: str, background: bool) -> None:
        async with limiter.slot(name, background=background):
            order.append(name)
            await asyncio.sleep(0)

    async def main() -> None:
        release = asyncio.Event()

        async def holder() -> None:
            async with limiter.slot("holder"):
                await release.wait()

        held = asyncio.create_task(holder())
        await asyncio.sleep(0)
        # Timers queued first, then change handlers: the change handlers still go first.
        waiters = [asyncio.create_task(take(f"timer-{i}", True)) for i in range(3)]
        await asyncio.sleep(0)
        waiters += [asyncio.create_task(take(f"change-{i}", False)) for i in range(2)]
        await asyncio.sleep(0)
        assert limiter.waiting == 5
        assert limiter.waiting_background == 3
        release.set()
        await asyncio.gather(held, *waiters)

    asyncio.run(main())
    assert order == ["change-0", "change-1", "timer-0", "timer-1", "timer-2"]
    assert limiter.max_in_flight == 1
    assert limiter.in_flight == 0
