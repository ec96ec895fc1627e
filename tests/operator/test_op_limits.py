"""Unit tests of ``queuejob.limits.guarded`` without a running kopf: limits, locks, failure policy.

The wrapped handlers are called directly with the keyword arguments kopf would pass; kopf's
Event posting is pointed at an in-memory queue so the Events a handler posts can be inspected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
import pytest
from op_kopf import capture_events, drain

from queuejob.errors import ConfigError
from queuejob.limits import guarded
from queuejob.runtime import Runtime
from queuejob.settings import OperatorSettings

Handler = Callable[..., Awaitable[Any]]


def _runtime(**overrides: Any) -> Runtime:
    settings = dataclasses.replace(OperatorSettings(backoff_jitter=0.0), **overrides)
    return Runtime.build(settings)


def _kwargs(runtime: Runtime, name: str = "qj") -> dict[str, Any]:
    memo = kopf.Memo()
    memo.runtime = runtime
    body = kopf.Body(
        {
            "apiVersion": "workqueue.example.com/v1alpha1",
            "kind": "QueueJob",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        }
    )
    return {
        "memo": memo,
        "uid": f"uid-{name}",
        "namespace": "ns",
        "name": name,
        "logger": logging.getLogger("test_op_limits"),
        "body": body,
        "status": {},
        "patch": kopf.Patch(),
    }


def _sample(runtime: Runtime, metric: str, label: str) -> float | None:
    return runtime.metrics.registry.get_sample_value(metric, {"name": label})


def _bookkeeping(runtime: Runtime) -> list[Any]:
    return [
        dict(runtime.object_users),
        dict(runtime.object_changing),
        dict(runtime.object_running),
        dict(runtime.object_locks),
    ]


def test_success_returns_the_result_and_leaves_no_bookkeeping() -> None:
    runtime = _runtime()

    @guarded("op-ok")
    async def handler(**_: Any) -> str:
        assert runtime.limiter.in_flight == 1
        return "done"

    async def call() -> Any:
        return await handler(**_kwargs(runtime))

    assert asyncio.run(call()) == "done"
    assert _bookkeeping(runtime) == [{}, {}, {}, {}]
    assert runtime.limiter.in_flight == 0
    assert _sample(runtime, "workqueue_adds_total", "handler:op-ok") == 1
    assert _sample(runtime, "workqueue_depth", "handler:op-ok") == 0
    assert _sample(runtime, "workqueue_work_duration_seconds_count", "handler:op-ok") == 1


def test_unexpected_errors_become_temporary_errors_with_exponential_delays() -> None:
    runtime = _runtime(backoff_base=0.5, backoff_cap=1.5)
    outcome = ["fail", "fail", "fail", "ok", "fail"]

    @guarded("op-flaky")
    async def handler(**_: Any) -> None:
        if outcome.pop(0) == "fail":
            raise RuntimeError("redis down")

    async def run() -> list[float | None]:
        delays: list[float | None] = []
        for _ in range(5):
            try:
                await handler(**_kwargs(runtime))
                delays.append(None)
            except kopf.TemporaryError as exc:
                assert "redis down" in str(exc)
                delays.append(exc.delay)
        return delays

    # doubling from the base up to the cap; a success forgets the failures
    assert asyncio.run(run()) == [0.5, 1.0, 1.5, None, 0.5]
    assert _sample(runtime, "workqueue_retries_total", "handler:op-flaky") == 4
    assert _bookkeeping(runtime) == [{}, {}, {}, {}]


def test_failures_of_different_objects_back_off_independently() -> None:
    runtime = _runtime()

    @guarded("op-each")
    async def handler(**_: Any) -> None:
        raise RuntimeError("boom")

    async def delay(name: str) -> float | None:
        with pytest.raises(kopf.TemporaryError) as info:
            await handler(**_kwargs(runtime, name))
        return info.value.delay

    async def run() -> list[float | None]:
        return [await delay("a"), await delay("a"), await delay("b")]

    assert asyncio.run(run()) == [1.0, 2.0, 1.0]


def test_config_error_is_permanent_and_recorded_on_the_queuejob() -> None:
    runtime = _runtime()

    @guarded("op-config")
    async def handler(**_: Any) -> None:
        raise ConfigError("ConfigMapNotFound", "spec.itemsFrom: ConfigMap ns/cm not found")

    kwargs = _kwargs(runtime)

    async def run() -> list[Any]:
        events = capture_events()
        with pytest.raises(kopf.PermanentError) as info:
            await handler(**kwargs)
        assert "ConfigMapNotFound" in str(info.value)
        return drain(events)

    events = asyncio.run(run())
    status = kwargs["patch"].status
    assert status["phase"] == "Failed"
    [condition] = status["conditions"]
    assert condition["type"] == "ConfigError"
    assert condition["status"] == "True"
    assert condition["reason"] == "ConfigMapNotFound"
    assert "ConfigMap ns/cm not found" in condition["message"]
    # The user learns that nothing needs re-applying: it is retried when the ConfigMap appears.
    every = f"{runtime.settings.config_recheck_interval:g}s"
    assert (
        f"Checked again every {every}: the QueueJob starts by itself once the ConfigMap"
        in (condition["message"])
    )
    # One Warning, not two with the same message: the phase change to Failed is the Event.
    assert [(e.type, e.reason) for e in events] == [("Warning", "ConfigError")]
    assert events[0].message.endswith(condition["message"])
    # permanent: no retry bookkeeping, no retry counted
    assert runtime.backoff.num_requeues("ns/qj:op-config") == 0
    assert not _sample(runtime, "workqueue_retries_total", "handler:op-config")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("ConfigMapNotFound", "Checked again every 7.5s: the QueueJob starts by itself once the"),
        ("SecretNotFound", "starts by itself once the Secret and its key exist"),
        ("InvalidItems", "starts by itself once the ConfigMap holds valid items"),
    ],
)
def test_fixable_config_errors_say_they_are_retried(reason: str, expected: str) -> None:
    assert expected in ConfigError(reason, "x: y").user_message(7.5)


def test_config_errors_that_need_a_spec_change_say_nothing_of_a_retry() -> None:
    assert ConfigError("InvalidSpec", "spec.x: bad").user_message(30) == "spec.x: bad"


def test_handlers_of_one_object_never_overlap_and_the_operator_limit_holds() -> None:
    runtime = _runtime(max_concurrent_handlers=2)
    running: list[str] = []
    peak_total = 0
    overlaps: list[list[str]] = []

    async def body(name: str, tag: str) -> None:
        nonlocal peak_total
        running.append(f"{name}:{tag}")
        peak_total = max(peak_total, len(running))
        same = [r for r in running if r.startswith(f"{name}:")]
        if len(same) > 1:
            overlaps.append(same)
        for _ in range(5):
            await asyncio.sleep(0)
        running.remove(f"{name}:{tag}")

    @guarded("op-change")
    async def change(name: str, **_: Any) -> None:
        await body(name, "change")

    @guarded("op-timer", kind="timer")
    async def timer(name: str, **_: Any) -> None:
        await body(name, "timer")

    async def run() -> None:
        calls = [
            change(**_kwargs(runtime, "a")),
            timer(**_kwargs(runtime, "a")),
            change(**_kwargs(runtime, "b")),
            timer(**_kwargs(runtime, "c")),
            change(**_kwargs(runtime, "c")),
        ]
        await asyncio.gather(*calls)

    asyncio.run(run())
    assert overlaps == []
    assert peak_total == 2
    assert runtime.limiter.max_in_flight == 2
    assert _bookkeeping(runtime) == [{}, {}, {}, {}]


def test_a_cancelled_waiter_leaves_no_depth_or_bookkeeping_behind() -> None:
    runtime = _runtime(max_concurrent_handlers=1)

    @guarded("op-cancel")
    async def handler(release: asyncio.Event, **_: Any) -> None:
        await release.wait()

    async def run() -> None:
        release = asyncio.Event()
        first = asyncio.ensure_future(handler(release=release, **_kwargs(runtime, "a")))
        second = asyncio.ensure_future(handler(release=release, **_kwargs(runtime, "b")))
        for _ in range(5):
            await asyncio.sleep(0)
        assert _sample(runtime, "workqueue_depth", "handler:op-cancel") == 1
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        release.set()
        await first

    asyncio.run(run())
    assert _sample(runtime, "workqueue_depth", "handler:op-cancel") == 0
    assert runtime.limiter.in_flight == 0
    assert _bookkeeping(runtime) == [{}, {}, {}, {}]


def test_leadership_is_checked_before_each_handler_runs() -> None:
    """``memo.check_leadership`` (leader election) runs first; if it ends the run, fn never runs."""
    runtime = _runtime()
    calls: list[str] = []

    class Lost(BaseException):
        """Stands in for the process exit of a lost leadership."""

    @guarded("op-leader")
    async def handler(**_: Any) -> str:
        calls.append("handler")
        return "done"

    def fresh() -> None:
        calls.append("check")

    def stale() -> None:
        calls.append("check")
        raise Lost

    async def call(check: Callable[[], None]) -> Any:
        kwargs = _kwargs(runtime)
        kwargs["memo"].check_leadership = check
        return await handler(**kwargs)

    assert asyncio.run(call(fresh)) == "done"
    assert calls == ["check", "handler"]
    calls.clear()
    with pytest.raises(Lost):
        asyncio.run(call(stale))
    assert calls == ["check"]


def test_waiting_change_handlers_get_a_slot_before_waiting_timers() -> None:
    runtime = _runtime(max_concurrent_handlers=1)
    order: list[str] = []
    release = asyncio.Event()

    @guarded("op-hold")
    async def hold(**_: Any) -> None:
        await release.wait()

    @guarded("op-tick", kind="timer")
    async def tick(name: str, **_: Any) -> None:
        order.append(f"timer {name}")

    @guarded("op-change")
    async def change(name: str, **_: Any) -> None:
        order.append(f"change {name}")

    async def run() -> None:
        held = asyncio.create_task(hold(**_kwargs(runtime, "a")))
        await asyncio.sleep(0)
        # Status timers of two QueueJobs queue first, then a create of a third one.
        calls = [asyncio.create_task(tick(**_kwargs(runtime, n))) for n in ("b", "c")]
        await asyncio.sleep(0)
        calls.append(asyncio.create_task(change(**_kwargs(runtime, "d"))))
        await asyncio.sleep(0)
        assert runtime.limiter.waiting == 3
        release.set()
        await asyncio.gather(held, *calls)

    asyncio.run(run())
    assert order == ["change d", "timer b", "timer c"]
    assert _bookkeeping(runtime) == [{}, {}, {}, {}]
