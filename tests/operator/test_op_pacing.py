"""RefreshPacer: idle QueueJobs back off to the idle interval; any change resets them."""

from __future__ import annotations

import pytest

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


def test_jitter_spreads_backed_off_refreshes_but_never_below_the_interval() -> None:
    clock = Clock()
    draws = iter([0.0, 0.5, 0.99])
    pacer = RefreshPacer(5, 60, clock=clock, jitter=0.2, rand=lambda: next(draws))
    for uid in ("a", "b", "c"):
        pacer.ran(uid, "1", idle=True)  # gap 10; waits 10, 9 and 8.02 s
        assert pacer.gap(uid) == 10
    clock.now += 8.02 - 2.5  # due within half a tick
    assert [pacer.due(u, "1") for u in "abc"] == [False, False, True]
    clock.now += 1
    assert [pacer.due(u, "1") for u in "abc"] == [False, True, True]
    with pytest.raises(ValueError):
        RefreshPacer(5, 60, jitter=1.0)
