"""Fair queuing with shuffle sharding: the order of service, checked against a reference model.

The reference model is the policy written as plainly as possible (lists, no caching, no
skipping): each flow's hand from :func:`deal`, a waiter joins the shortest queue of its hand,
service is round-robin over the queues. Hypothesis drives random pushes and pops, of the queue
alone and of the :class:`ConcurrencyLimiter` that uses it (with its two priorities and
cancelled waiters), and the two must agree on every step.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from workqueue.concurrency import ConcurrencyLimiter
from workqueue.fairqueue import FairQueues, deal

FLOWS = st.sampled_from(["team-a", "team-b", "team-c", "ns-1", "ns-2", ""])


class Model:
    """The fairness policy, plainly."""

    def __init__(self, queues: int, hand_size: int) -> None:
        self.queues: list[list[tuple[str, Any]]] = [[] for _ in range(queues)]
        self.hand_size = hand_size
        self.next = 0

    def push(self, flow: str, item: Any) -> None:
        hand = deal(flow, len(self.queues), self.hand_size)
        shortest = min(len(self.queues[i]) for i in hand)
        first = next(i for i in hand if len(self.queues[i]) == shortest)
        self.queues[first].append((flow, item))

    def pop(self) -> tuple[str, Any] | None:
        n = len(self.queues)
        for step in range(n):
            index = (self.next + step) % n
            if self.queues[index]:
                self.next = (index + 1) % n
                return self.queues[index].pop(0)
        return None

    def remove(self, item: Any) -> None:
        for queue in self.queues:
            queue[:] = [entry for entry in queue if entry[1] is not item]


@given(
    queues=st.integers(1, 12),
    hand=st.integers(1, 4),
    ops=st.lists(st.one_of(FLOWS, st.none()), max_size=80),
)
def test_fair_queues_serve_in_the_reference_order(
    queues: int, hand: int, ops: list[str | None]
) -> None:
    assume(hand <= queues)
    fair: FairQueues[int] = FairQueues(queues, hand)
    model = Model(queues, hand)
    for i, op in enumerate(ops):
        if op is None:
            assert fair.pop() == model.pop()
        else:
            fair.push(op, i)
            model.push(op, i)
    while (expected := model.pop()) is not None:
        assert fair.pop() == expected
    assert fair.pop() is None and len(fair) == 0


@given(flow=FLOWS, queues=st.integers(1, 200), hand=st.integers(1, 8))
def test_a_hand_is_distinct_in_range_and_stable(flow: str, queues: int, hand: int) -> None:
    assume(hand <= queues)
    dealt = deal(flow, queues, hand)
    assert len(set(dealt)) == hand and all(0 <= q < queues for q in dealt)
    assert deal(flow, queues, hand) == dealt


@given(flood=st.integers(1, 300), other=st.text(min_size=1, max_size=8))
def test_a_flow_apart_from_a_flood_waits_at_most_one_round(flood: int, other: str) -> None:
    fair: FairQueues[int] = FairQueues(64, 4)
    assume(not set(fair.hand("flood")) & set(fair.hand(other)))
    for i in range(flood):
        fair.push("flood", i)
    fair.push(other, -1)
    served = [fair.pop() for _ in range(min(flood + 1, 5))]
    assert (other, -1) in served  # 4 queues of the flood + its own: one round at most


# Limiter steps: ("wait", flow, background) adds a waiter; ("cancel", k) cancels the k-th
# still-waiting waiter; ("release",) frees the held slot, which goes to the next waiter.
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), FLOWS, st.booleans()),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("release")),
    ),
    max_size=60,
)


@settings(deadline=None)
@given(steps=STEPS)
@example(  # a cancelled waiter must not count in its queue's length
    steps=[
        ("wait", "team-a", False),
        ("cancel", 0),
        ("wait", "team-a", False),
        ("wait", "team-a", False),
        ("release",),
    ]
)
def test_the_limiter_grants_slots_in_the_reference_order(steps: list[tuple[Any, ...]]) -> None:
    async def run() -> None:
        limiter = ConcurrencyLimiter(1, queues=8, hand_size=2)
        models = {False: Model(8, 2), True: Model(8, 2)}
        granted: list[int] = []
        holder = asyncio.Event()
        waiting: dict[int, asyncio.Task[None]] = {}

        async def hold(n: int, flow: str, background: bool) -> None:
            async with limiter.slot(n, background=background, flow=flow):
                granted.append(n)
                await holder.wait()

        first = asyncio.create_task(hold(0, "first", False))
        await asyncio.sleep(0)
        assert granted == [0]
        expected = [0]
        free = False  # the slot is free (released with nobody waiting)
        for n, step in enumerate(steps, start=1):
            if step[0] == "wait":
                _, flow, background = step
                waiting[n] = asyncio.create_task(hold(n, flow, background))
                if free:
                    free = False
                    expected.append(n)
                else:
                    models[background].push(flow, n)
            elif step[0] == "cancel" and waiting:
                victim = sorted(waiting)[step[1] % len(waiting)]
                if victim in granted:
                    continue
                waiting.pop(victim).cancel()
                for model in models.values():
                    model.remove(victim)
            elif step[0] == "release" and not free:
                holder.set()
                await asyncio.sleep(0)
                holder.clear()
                nxt = models[False].pop() or models[True].pop()
                if nxt is not None:
                    expected.append(nxt[1])
                    waiting.pop(nxt[1], None)
                else:
                    free = True
            for _ in range(3):
                await asyncio.sleep(0)
            assert granted == expected, (granted, expected)
            assert limiter.in_flight <= 1
        holder.set()
        for task in [first, *waiting.values()]:
            task.cancel()
        await asyncio.gather(first, *waiting.values(), return_exceptions=True)

    asyncio.run(run())


def test_the_limiter_reports_waiting_and_running_per_flow() -> None:
    async def run() -> None:
        limiter = ConcurrencyLimiter(2)
        release = asyncio.Event()

        async def hold(flow: str) -> None:
            async with limiter.slot(flow=flow):
                await release.wait()

        tasks = [asyncio.create_task(hold(f)) for f in ("a", "a", "a", "b", "b")]
        for _ in range(3):
            await asyncio.sleep(0)
        assert limiter.flows() == {"a": (1, 2), "b": (2, 0)}
        tasks[4].cancel()
        await asyncio.sleep(0)
        assert limiter.flows() == {"a": (1, 2), "b": (1, 0)}
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert limiter.flows() == {} and limiter.waiting == 0 and limiter.in_flight == 0

    asyncio.run(run())
