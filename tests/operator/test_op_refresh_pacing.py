"""The refresher queues each QueueJob's next resync itself, as the pacer says (no timer task).

The refresh function is replaced by a recorder that returns a chosen outcome, so only the
refresher's scheduling is under test: after a refresh the QueueJob is queued again at the
pacer's gap (the interval, doubling while idle), earlier when the outcome names an earlier time
(a lease expiry), and not at all when there was nothing to refresh; a forgotten QueueJob is never
refreshed again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queuejob.handlers.refresh import Outcome
from queuejob.pacing import RefreshPacer
from queuejob.refresher import EXPIRY_MARGIN, Refresher

UID = "uid-qj"
BODY = {
    "apiVersion": "workqueue.example.com/v1alpha1",
    "kind": "QueueJob",
    "metadata": {"name": "qj", "namespace": "ns", "uid": UID, "resourceVersion": "7"},
    "status": {"queue": "qj:ns:qj:1234", "phase": "Running"},
}


class Recorder:
    """The refresher's run function: returns ``outcomes`` in turn, counts the calls."""

    def __init__(self, *outcomes: Outcome | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, **_: Any) -> Outcome | None:
        self.calls += 1
        return self.outcomes.pop(0) if self.outcomes else Outcome(idle=True)


async def _refreshed(refresher: Refresher, recorder: Recorder, calls: int) -> None:
    for _ in range(200):
        if recorder.calls >= calls and refresher.queue.processing == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{recorder.calls} refreshes, expected {calls}")


def _run(recorder: Recorder, pacer: RefreshPacer, check: Any) -> None:
    async def main() -> None:
        refresher = Refresher(recorder, delay=0.01, workers=2, pacer=pacer)
        refresher.ensure_started()
        try:
            refresher.observe(BODY, "ADDED")  # first sight: one refresh
            await _refreshed(refresher, recorder, 1)
            await check(refresher)
        finally:
            await refresher.stop()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("outcome", "due", "resync"),
    [
        (Outcome(idle=False), 30.0, True),  # busy: one interval
        (Outcome(idle=True), 60.0, True),  # idle: the gap doubles
        (Outcome(idle=True, timer_in=4.0), 4.0 + EXPIRY_MARGIN, False),  # a lease expires first
        (Outcome(idle=True, next_in=45.0), 45.0, False),  # a deadline (TTL) within the cap
    ],
)
def test_a_refresh_queues_the_next_resync(outcome: Outcome, due: float, resync: bool) -> None:
    async def check(refresher: Refresher) -> None:
        queued = refresher.queue.due_in(UID)
        assert queued is not None and due - 1 < queued <= due
        # The metrics tell a queued resync from a refresh queued for a reason.
        stats = refresher.stats()
        assert stats["queuejob_refresh_resyncs_queued"] == int(resync)
        assert stats["queuejob_refresh_queue_depth"] == int(not resync)
        # Triggers: the first sight, and a lease expiry or deadline (a resync is not one).
        assert stats["queuejob_refresh_triggers"] == 1 + int(not resync)
        refresher.trigger(UID, 100)  # a trigger makes it more than a resync
        assert refresher.stats()["queuejob_refresh_resyncs_queued"] == 0
        assert refresher.stats()["queuejob_refresh_triggers"] == 2 + int(not resync)

    _run(Recorder(outcome), RefreshPacer(30, 600), check)


def test_nothing_to_refresh_queues_no_resync() -> None:
    async def check(refresher: Refresher) -> None:
        assert refresher.queue.due_in(UID) is None
        assert len(refresher.pacer or []) == 0

    _run(Recorder(None), RefreshPacer(30, 600), check)


def test_resyncs_back_off_while_idle_and_run_without_any_trigger() -> None:
    recorder = Recorder()

    async def check(refresher: Refresher) -> None:
        # Short intervals so that the resyncs themselves run here: 0.05 s doubling to 0.2 s.
        await _refreshed(refresher, recorder, 4)
        assert refresher.pacer is not None and refresher.pacer.gap(UID) == pytest.approx(0.2)
        refresher.forget(UID)
        calls = recorder.calls
        await asyncio.sleep(0.5)
        assert recorder.calls == calls  # forgotten: no resync

    _run(recorder, RefreshPacer(0.05, 0.2), check)


def test_the_operator_wide_cap_stretches_idle_gaps() -> None:
    pacer = RefreshPacer(30, 600, max_rate=2)
    for i in range(4000):
        pacer.ran(f"other-{i}", "1", idle=True)

    async def check(refresher: Refresher) -> None:
        queued = refresher.queue.due_in(UID)
        assert queued is not None and 59 < queued <= 60  # the first idle gap: 2 x interval
        assert pacer.idle_cap == pytest.approx(4001 / 2)

    _run(Recorder(Outcome(idle=True)), pacer, check)


def test_resyncs_due_together_wait_their_turn_and_triggers_do_not() -> None:
    """100 QueueJobs whose resyncs come due together at a cap of 10/s: the resyncs start at
    most ``burst + 10 * t`` in ``t`` seconds (not as one wave), the rest are queued for their
    turns, and a trigger of a held QueueJob refreshes it at once, without waiting for its turn."""
    starts: list[tuple[str, float]] = []

    async def run(uid: str, **_: Any) -> Outcome:
        starts.append((uid, asyncio.get_running_loop().time()))
        return Outcome(idle=False)  # busy: the next resync one interval later

    async def main() -> None:
        refresher = Refresher(run, delay=0.0, workers=2, pacer=RefreshPacer(0.05, 10, max_rate=10))
        refresher.ensure_started()
        try:
            for i in range(100):
                body = {**BODY, "metadata": {**BODY["metadata"], "uid": f"qj-{i}"}}
                refresher.observe(body, "ADDED")  # first sight: a refresh, not a resync
            while len(starts) < 100:
                await asyncio.sleep(0.01)
            began = asyncio.get_running_loop().time()
            await asyncio.sleep(2.0)
            resyncs = [t for _, t in starts[100:]]
            assert 10 <= len(resyncs) <= 10 + 10 * (resyncs[-1] - began) + 1
            assert refresher.stats()["queuejob_refresh_resyncs_held"] >= 80
            # Neither the resyncs nor their re-queueing for a turn count as triggers.
            assert refresher.stats()["queuejob_refresh_triggers"] == 100
            late = [u for u in refresher.bodies if (refresher.queue.due_in(u) or 0) > 3]
            assert late, "no resync is held for a later turn"
            asked = asyncio.get_running_loop().time()
            refresher.trigger(late[0])
            while not any(u == late[0] and t >= asked for u, t in starts):
                await asyncio.sleep(0.01)
            waited = asyncio.get_running_loop().time() - asked
            assert waited < 2.0, f"the trigger waited {waited:.1f} s for a resync's turn"
        finally:
            await refresher.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
