"""Unit and property tests of ``queuejob.autoscaler`` (the worker count from queue depth, with
downscale stabilization) and of ``spec.autoscaling`` parsing; a fake clock drives the time."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuejob import jobs
from queuejob.autoscaler import Stabilizer, clamp, recommend, workers_for
from queuejob.spec import Autoscaling, SpecError, parse


class Clock:
    """A manual monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@st.composite
def policies(draw: st.DrawFn) -> Autoscaling:
    high = draw(st.integers(1, 100))
    return Autoscaling(
        max_parallelism=high,
        min_parallelism=draw(st.integers(0, high)),
        items_per_worker=draw(st.integers(1, 50)),
        scale_down_stabilization_seconds=draw(st.integers(0, 60)),
    )


#: (seconds since the previous observation, pending + leased items)
observations = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 3000)), max_size=60)


def run(
    policy: Autoscaling, current: int, steps: list[tuple[int, int]]
) -> list[tuple[float, int, int, int, float | None]]:
    """Feed ``steps`` to a new Stabilizer; (time, work, recommended, desired, scale_down_in)."""
    clock = Clock()
    stab = Stabilizer(clock)
    out = []
    for dt, work in steps:
        clock.now += dt
        d = stab.decide("qj", policy, work, current)
        out.append((clock.now, work, d.recommended, d.desired, d.scale_down_in))
    return out


def test_recommendation_is_ceil_of_work_per_worker_within_bounds() -> None:
    policy = Autoscaling(max_parallelism=5, min_parallelism=1, items_per_worker=10)
    assert [recommend(policy, w) for w in (0, 1, 10, 11, 30, 49, 50, 51, 10_000)] == [
        1, 1, 1, 2, 3, 5, 5, 5, 5,
    ]  # fmt: skip
    zero = Autoscaling(max_parallelism=3, min_parallelism=0, items_per_worker=1)
    assert recommend(zero, 0) == 0  # no work: minParallelism, 0 allowed
    assert (clamp(zero, -1), clamp(zero, 7)) == (0, 3)


def test_scale_up_is_immediate_and_scale_down_waits_the_window() -> None:
    policy = Autoscaling(
        max_parallelism=10, items_per_worker=10, scale_down_stabilization_seconds=30
    )
    clock = Clock()
    stab = Stabilizer(clock)
    assert stab.decide("a", policy, 15, current=2).desired == 2  # 2 recommended, Job has 2
    clock.now += 1
    assert stab.decide("a", policy, 95, current=2).desired == 10  # burst: up at once
    clock.now += 1
    held = stab.decide("a", policy, 20, current=10)
    assert (held.desired, held.recommended, held.held) == (10, 2, True)
    assert held.scale_down_in == pytest.approx(29)
    clock.now += 28.5
    assert stab.decide("a", policy, 20, current=10).desired == 10  # 29.5 s after 10: held
    clock.now += 0.5
    assert stab.decide("a", policy, 20, current=10).desired == 2  # 30 s after the last 10
    assert stab.decide("a", policy, 0, current=2).desired == 2  # 2 was recommended just now
    clock.now += 30
    assert stab.decide("a", policy, 0, current=2).desired == 0  # no work: minParallelism


def test_a_queue_that_drains_and_refills_within_the_window_does_not_flap() -> None:
    policy = Autoscaling(max_parallelism=8, items_per_worker=5, scale_down_stabilization_seconds=20)
    # Every 3 s the queue swings between 40 items (8 workers) and 2 items (1 worker).
    steps = [(3, 40 if i % 2 else 2) for i in range(40)]
    desired = [d for _, _, _, d, _ in run(policy, 1, steps)]
    assert desired[0] == 1 and set(desired[1:]) == {8}  # up once, never down in between
    calm = run(policy, 1, [*steps, *[(3, 2)] * 10])
    after = [d for _, _, _, d, _ in calm[len(steps) :]]
    assert after[-1] == 1 and after.count(8) == 6  # down once, 20 s after the last 40


def test_a_new_key_starts_from_the_jobs_current_parallelism() -> None:
    """After an operator restart the Job's count holds for a full window before shrinking."""
    policy = Autoscaling(
        max_parallelism=10, items_per_worker=1, scale_down_stabilization_seconds=15
    )
    clock = Clock()
    stab = Stabilizer(clock)
    assert stab.decide("b", policy, 1, current=7).desired == 7
    clock.now += 14
    assert stab.decide("b", policy, 1, current=7).desired == 7
    clock.now += 1
    assert stab.decide("b", policy, 1, current=7).desired == 1
    stab.forget("b")
    assert len(stab) == 0 and stab.window("b") == ()


def test_narrowed_bounds_apply_at_once() -> None:
    wide = Autoscaling(max_parallelism=10, items_per_worker=1, scale_down_stabilization_seconds=60)
    clock = Clock()
    stab = Stabilizer(clock)
    assert stab.decide("c", wide, 10, current=1).desired == 10
    narrow = Autoscaling(max_parallelism=4, items_per_worker=1, scale_down_stabilization_seconds=60)
    assert stab.decide("c", narrow, 10, current=10).desired == 4
    raised = Autoscaling(
        max_parallelism=10,
        min_parallelism=6,
        items_per_worker=1,
        scale_down_stabilization_seconds=60,
    )
    assert stab.decide("c", raised, 0, current=4).desired == 10  # 10 still in the window


@given(policies(), st.integers(0, 100), observations)
def test_decision_is_the_largest_recommendation_of_the_window(
    policy: Autoscaling, current: int, steps: list[tuple[int, int]]
) -> None:
    """Reference model: every recommendation kept, the seed being ``current`` at the first
    observation; the decision is the clamped maximum over the window (now - W, now]."""
    window = policy.scale_down_stabilization_seconds
    history: list[tuple[float, int]] = []
    for now, work, recommended, desired, scale_down_in in run(policy, current, steps):
        if not history:
            history.append((now, current))
        assert recommended == recommend(policy, work)
        history.append((now, recommended))
        live = [v for t, v in history[:-1] if now - t < window] + [recommended]
        assert desired == clamp(policy, max(live))
        assert policy.min_parallelism <= desired <= policy.max_parallelism
        assert desired >= recommended  # scale-up is immediate
        if desired > recommended:
            assert scale_down_in is not None and 0 < scale_down_in <= window
        else:
            assert scale_down_in is None


@given(policies(), st.integers(0, 100), observations)
def test_a_scale_up_is_never_undone_within_the_window(
    policy: Autoscaling, current: int, steps: list[tuple[int, int]]
) -> None:
    """Hysteresis: once the decision rose to v at time t, it stays >= v before t + W."""
    window = policy.scale_down_stabilization_seconds
    decided = [(now, desired) for now, _, _, desired, _ in run(policy, current, steps)]
    for i in range(1, len(decided)):
        t_up, v = decided[i]
        if v <= decided[i - 1][1]:
            continue
        for t, later in decided[i + 1 :]:
            if t - t_up < window:
                assert later >= v, (t_up, v, t, later)


@given(policies(), st.integers(0, 100), observations, st.integers(0, 3000))
def test_a_steady_queue_is_followed_after_one_window(
    policy: Autoscaling, current: int, steps: list[tuple[int, int]], work: int
) -> None:
    """Whatever came before, a recommendation held for W seconds is the decision; the kept
    state stays bounded by the number of distinct counts."""
    window = policy.scale_down_stabilization_seconds
    tail = [(0, work), (window, work)]
    result = run(policy, current, [*steps, *tail])
    assert result[-1][3] == recommend(policy, work)
    clock = Clock()
    stab = Stabilizer(clock)
    for dt, w in steps:
        clock.now += dt
        stab.decide("k", policy, w, current)
    bound = policy.max_parallelism - policy.min_parallelism + 2
    assert len(stab.window("k")) <= bound


def test_workers_for_a_new_job() -> None:
    plain = parse({"items": ["a"], "parallelism": 3})
    assert workers_for(plain, 500) == 3
    auto = parse({"items": ["a"], "parallelism": 3, "autoscaling": {"maxParallelism": 6}})
    assert (workers_for(auto, 0), workers_for(auto, 11), workers_for(auto, 500)) == (0, 2, 6)
    job = jobs.build_job(
        {"metadata": {"name": "qj", "namespace": "ns", "uid": "u"}},
        auto,
        queue="q",
        redis_url="redis://r:6379/0",
        default_image="img",
        image_pull_policy="IfNotPresent",
        backoff_limit=2,
        parallelism=workers_for(auto, 0),
    )
    # Started at 0 workers: only parallelism is 0, completions 1 keeps the Job from completing.
    assert (job["spec"]["parallelism"], job["spec"]["completions"]) == (0, 1)


def test_autoscaling_spec_defaults_and_errors_name_the_field() -> None:
    spec = parse({"items": ["a"], "autoscaling": {"maxParallelism": 4}})
    assert spec.autoscaling == Autoscaling(
        max_parallelism=4,
        min_parallelism=0,
        items_per_worker=10,
        scale_down_stabilization_seconds=30,
    )
    assert parse({"items": ["a"]}).autoscaling is None
    bad: list[tuple[Any, str]] = [
        ({}, "spec.autoscaling.maxParallelism"),
        ({"maxParallelism": 0}, "spec.autoscaling.maxParallelism"),
        ({"maxParallelism": 101}, "spec.autoscaling.maxParallelism"),
        ({"maxParallelism": 2, "minParallelism": 3}, "spec.autoscaling.minParallelism"),
        ({"maxParallelism": 2, "itemsPerWorker": 0}, "spec.autoscaling.itemsPerWorker"),
        (
            {"maxParallelism": 2, "scaleDownStabilizationSeconds": 3601},
            "spec.autoscaling.scaleDownStabilizationSeconds",
        ),
        ("fast", "spec.autoscaling"),
    ]
    for value, field in bad:
        with pytest.raises(SpecError) as err:
            parse({"items": ["a"], "autoscaling": value})
        assert err.value.field == field, (value, err.value)
