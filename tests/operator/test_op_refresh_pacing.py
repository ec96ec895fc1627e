"""The status timer's tick consults the pacer before the guarded refresh (before lock and slot).

``refresh_tick`` is kopf's timer function; the guarded ``refresh`` behind it is replaced by a
recorder that reports an outcome, so only the tick's decisions are under test.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from queuejob.handlers import refresh as refresh_module
from queuejob.handlers.refresh import Outcome
from queuejob.pacing import RefreshPacer
from queuejob.runtime import Runtime
from queuejob.settings import OperatorSettings


def _tick_kwargs(runtime: Runtime, version: str) -> dict[str, Any]:
    memo = kopf.Memo()
    memo.runtime = runtime
    body = kopf.Body(
        {
            "apiVersion": "workqueue.example.com/v1alpha1",
            "kind": "QueueJob",
            "metadata": {
                "name": "qj",
                "namespace": "ns",
                "uid": "uid-qj",
                "resourceVersion": version,
            },
        }
    )
    return {
        "memo": memo,
        "uid": "uid-qj",
        "namespace": "ns",
        "name": "qj",
        "logger": logging.getLogger("test_op_refresh_pacing"),
        "body": body,
        "spec": {},
        "status": {},
        "patch": kopf.Patch(),
    }


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Outcome | None]:
    """Outcomes the recorder returns, one per refresh; the list of those consumed is kept."""
    outcomes: list[Outcome | None] = []

    async def recorder(**_: Any) -> Outcome | None:
        outcomes.append(Outcome(idle=True))
        return outcomes[-1]

    monkeypatch.setattr(refresh_module, "refresh", recorder)
    return outcomes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _runtime(idle_interval: float, clock: Clock) -> Runtime:
    runtime = Runtime.build(OperatorSettings(status_interval=5, status_idle_interval=idle_interval))
    runtime.pacer = RefreshPacer(5, idle_interval, clock=clock)
    return runtime


def test_an_idle_queuejob_is_not_refreshed_at_the_next_tick(runs: list[Outcome | None]) -> None:
    clock = Clock()
    runtime = _runtime(60, clock)

    async def ticks() -> None:
        await refresh_module.refresh_tick(**_tick_kwargs(runtime, "7"))
        clock.now += 5
        await refresh_module.refresh_tick(**_tick_kwargs(runtime, "7"))  # idle: next in 10 s
        assert len(runs) == 1
        await refresh_module.refresh_tick(**_tick_kwargs(runtime, "8"))  # the object changed
        assert len(runs) == 2
        clock.now += 5
        await refresh_module.refresh_tick(**_tick_kwargs(runtime, "8"))
        assert len(runs) == 2
        clock.now += 5
        await refresh_module.refresh_tick(**_tick_kwargs(runtime, "8"))  # 10 s later
        assert len(runs) == 3

    asyncio.run(ticks())
    assert runtime.pacer.gap("uid-qj") == 20


def test_without_backoff_every_tick_refreshes(runs: list[Outcome | None]) -> None:
    clock = Clock()
    runtime = _runtime(5, clock)

    async def ticks() -> None:
        for _ in range(3):
            await refresh_module.refresh_tick(**_tick_kwargs(runtime, "7"))
            clock.now += 5  # kopf's ticks are status_interval apart

    asyncio.run(ticks())
    assert len(runs) == 3
