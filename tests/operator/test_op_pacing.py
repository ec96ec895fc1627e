"""RefreshPacer: idle QueueJobs back off to the idle interval; any change resets them; resyncs
that come due together take turns at the operator-wide rate."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queuejob.pacing import RefreshPacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ticks_run(pacer: RefreshPacer, clock: Clock, uid: str, version: str, seconds: float) -> int:
    """Tick every ``pacer.interval`` for ``seconds`` like kopf; count (idle) refreshes that ran."""
    ran = 0
    for _ in range(int(seconds / pacer.interval)):
        clock.now += pacer.interval
        if pacer.due(uid, version):
            pacer.ran(uid, version, idle=True)
            ran += 1
    return ran


def test_a_new_queuejob_is_due_at_once() -> None:
    pacer = RefreshPacer(5, 60, clock=Clock())
    assert pacer.due("a", "1")


def test_an_idle_queuejob_backs_off_doubling_up_to_the_idle_interval() -> None:
    clock = Clock()
    pacer = RefreshPacer(5, 60, clock=clock)
    pacer.ran("a", "1", idle=True)
    gaps = []
    for _ in range(8):
        gaps.append(pacer.gap("a"))
        clock.now += pacer.gap("a")
        assert pacer.due("a", "1")
        pacer.ran("a", "1", idle=True)
    assert gaps == [10, 20, 40, 60, 60, 60, 60, 60]
    # Between two due refreshes, kopf's ticks are skipped.
    clock.now += 5
    assert not pacer.due("a", "1")


def test_steady_idle_cost_is_bounded_by_the_idle_interval() -> None:
    clock = Clock()
    pacer = RefreshPacer(5, 60, clock=clock)
    ticks_run(pacer, clock, "a", "1", 600)  # backed off
    assert ticks_run(pacer, clock, "a", "1", 600) <= 600 / 60 + 1


def test_a_busy_refresh_resets_the_gap() -> None:
    clock = Clock()
    pacer = RefreshPacer(5, 60, clock=clock)
    ticks_run(pacer, clock, "a", "1", 300)
    assert pacer.gap("a") == 60
    clock.now += 60
    pacer.ran("a", "1", idle=False)
    assert pacer.gap("a") == 5
    clock.now += 5
    assert pacer.due("a", "1")


def test_a_new_resource_version_is_due_at_once() -> None:
    clock = Clock()
    pacer = RefreshPacer(5, 60, clock=clock)
    ticks_run(pacer, clock, "a", "1", 300)
    clock.now += 5
    assert not pacer.due("a", "1")
    assert pacer.due("a", "2")  # e.g. spec.parallelism changed
    pacer.ran("a", "2", idle=True)
    assert pacer.gap("a") == 10  # the backoff starts again


def test_next_in_names_the_next_refresh_within_the_bounds() -> None:
    clock = Clock()
    pacer = RefreshPacer(5, 60, clock=clock)
    pacer.ran("a", "1", idle=True, next_in=30)
    clock.now += 25
    assert not pacer.due("a", "1")
    clock.now += 5
    assert pacer.due("a", "1")
    pacer.ran("b", "1", idle=True, next_in=3600)
    clock.now += 60
    assert pacer.due("b", "1")


def test_queuejobs_are_paced_separately_and_forgotten() -> None:
    clock = Clock()
    pacer = RefreshPacer(5, 60, clock=clock)
    ticks_run(pacer, clock, "a", "1", 300)
    assert pacer.due("b", "1")
    assert len(pacer) == 1
    pacer.forget("a")
    assert len(pacer) == 0
    assert pacer.due("a", "1")


def test_idle_interval_equal_to_interval_disables_the_backoff() -> None:
    clock = Clock()
    pacer = RefreshPacer(5, 5, clock=clock)
    assert ticks_run(pacer, clock, "a", "1", 100) == 20


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        RefreshPacer(5, 4)
    with pytest.raises(ValueError):
        RefreshPacer(0, 4)
    with pytest.raises(ValueError):
        RefreshPacer(5, 60, max_rate=-1)


def test_jitter_spreads_backed_off_refreshes_but_never_below_the_interval() -> None:
    clock = Clock()
    draws = iter([0.0, 0.5, 0.99])
    pacer = RefreshPacer(5, 60, clock=clock, jitter=0.2, rand=lambda: next(draws))
    for uid in ("a", "b", "c"):
        pacer.ran(uid, "1", idle=True)  # gap 10; waits 10, 9 and 8.02 s
        assert pacer.gap(uid) == 10
    clock.now += 8.02
    assert [pacer.due(u, "1") for u in "abc"] == [False, False, True]
    assert [round(pacer.wait(u), 2) for u in "abc"] == [1.98, 0.98, 0.0]
    clock.now += 1
    assert [pacer.due(u, "1") for u in "abc"] == [False, True, True]
    with pytest.raises(ValueError):
        RefreshPacer(5, 60, jitter=1.0)


def test_the_idle_cap_grows_with_the_queuejobs_beyond_the_rate() -> None:
    clock = Clock()
    pacer = RefreshPacer(5, 60, clock=clock, max_rate=2)
    for i in range(100):  # 100 QueueJobs at 2/s: 50 s, below the idle interval
        pacer.ran(f"q{i}", "1", idle=True)
    assert pacer.idle_cap == 60
    for i in range(100, 1000):
        pacer.ran(f"q{i}", "1", idle=True)
    assert pacer.idle_cap == 500  # 1,000 QueueJobs at 2/s
    for _ in range(12):  # back off to the cap
        clock.now += pacer.gap("q0")
        pacer.ran("q0", "1", idle=True)
    assert pacer.gap("q0") == 500 and pacer.wait("q0") == 500
    pacer.ran("q0", "1", idle=False)  # something happened: back to the interval
    assert pacer.gap("q0") == 5
    for i in range(1, 1000):
        pacer.forget(f"q{i}")
    assert pacer.idle_cap == 60


@pytest.mark.parametrize("count", [1_000, 5_000])
def test_idle_resyncs_of_many_queuejobs_stay_near_the_rate(count: int) -> None:
    """Idle QueueJobs refreshed whenever due, for six hours: once backed off (the last three),
    their resyncs are about the cap (2/s; at most 2 / (1 - jitter)), not count / idle_interval
    (8.3/s at 5,000); below the cap's reach (1,000: 1.7/s) the idle interval rules."""
    clock = Clock()
    pacer = RefreshPacer(120, 600, clock=clock, jitter=0.2, max_rate=2)
    uids = [f"q{i}" for i in range(count)]
    for uid in uids:
        pacer.ran(uid, "1", idle=True)
    runs = 0
    for minute in range(360):
        clock.now += 60
        for uid in uids:
            if pacer.due(uid, "1"):
                pacer.ran(uid, "1", idle=True)
                runs += minute >= 180
    rate = runs / (3 * 3600)
    assert rate <= 2 / (1 - 0.2)
    assert rate >= min(2.0, count / 600) * 0.9  # and they do resync


def test_without_a_cap_every_resync_has_its_turn_at_once() -> None:
    pacer = RefreshPacer(5, 60, clock=Clock())
    assert [pacer.admit() for _ in range(1000)] == [0.0] * 1000


def test_resyncs_due_together_take_turns_at_the_rate() -> None:
    """10,000 QueueJobs created together come due together: after a burst of one second's
    worth, their turns are spaced 1 / max_rate apart, not run as one wave."""
    clock = Clock()
    pacer = RefreshPacer(120, 600, clock=clock, max_rate=2)
    waits = [pacer.admit() for _ in range(10_000)]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2:5] == [0.5, 1.0, 1.5]
    assert waits[-1] == pytest.approx(9998 / 2)
    clock.now += 10_000  # the bucket refills up to its burst, no further
    assert [pacer.admit() for _ in range(3)] == [0.0, 0.0, 0.5]


@given(
    rate=st.sampled_from([0.5, 2.0, 7.5]),
    steps=st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=300),
)
@settings(max_examples=60, deadline=None)
def test_turns_never_exceed_the_rate_in_any_window(rate: float, steps: list[float]) -> None:
    """Whenever resyncs come due (any spacing), the times their turns come keep within
    ``burst + rate * t`` in every window of ``t`` seconds, and no turn is before its resync
    was due."""
    clock = Clock()
    pacer = RefreshPacer(5, 60, clock=clock, max_rate=rate)
    burst = max(1, math.ceil(rate))
    starts = []
    for step in steps:
        clock.now += step
        wait = pacer.admit()
        assert wait >= 0
        starts.append(clock.now + wait)
    starts.sort()
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            assert j - i + 1 <= burst + rate * (starts[j] - first) + 1e-6
