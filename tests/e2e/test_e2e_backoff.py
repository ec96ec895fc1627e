"""Backoff: with Redis down, handlers retry with growing, jittered delays and recover after."""

from __future__ import annotations

import datetime
import itertools
import re
import time

import pytest

from fixtures.operator import OperatorHandle, queuejob, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RETRY = re.compile(
    r"^\[(?P<ts>[0-9-]+ [0-9:,]+)\].*\[(?P<obj>[^\]]+)\] Handler reconcile failed: "
    r".*; retry (?P<n>\d+) in (?P<delay>[0-9.]+)s",
    re.MULTILINE,
)


def _retries(operator: OperatorHandle, obj: str) -> list[tuple[datetime.datetime, float]]:
    """(time of the failed attempt, chosen delay) of each logged retry of ``obj``'s handler."""
    return [
        (datetime.datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S,%f"), float(m["delay"]))
        for m in RETRY.finditer(operator.logs())
        if m["obj"] == obj
    ]


def _delays(operator: OperatorHandle, obj: str) -> list[float]:
    return [delay for _, delay in _retries(operator, obj)]


def test_handlers_back_off_while_redis_is_down(operator: OperatorHandle, namespace: str) -> None:
    base = float(operator.setting("QUEUEJOB_BACKOFF_BASE", "1"))
    cap = float(operator.setting("QUEUEJOB_BACKOFF_CAP", "60"))
    jitter = float(operator.setting("QUEUEJOB_BACKOFF_JITTER", "0.2"))
    obj = f"{namespace}/outage"
    # Enough outage for four retries: base * (1 + 2 + 4 + 8), at least 8 s.
    outage = max(8.0, min(base * 15, 60.0))
    with operator.redis_outage():
        started = time.monotonic()
        operator.apply(
            queuejob(
                "outage",
                namespace,
                items=["a", "b", "c"],
                worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.01"}]},
            )
        )
        wait_for(
            lambda: len(_delays(operator, obj)) >= 4,
            outage + 60,
            "four handler retries while Redis is down",
        )
        qj = operator.get_qj(namespace, "outage")
        assert qj.get("status", {}).get("phase") in (None, "Pending")
        down_for = time.monotonic() - started

    retries = _retries(operator, obj)
    delays = [delay for _, delay in retries]
    # The actual pause between two attempts is at least the delay chosen after the first one.
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(retries)]
    print("observed gaps between attempts (s): " + ", ".join(f"{g:.3f}" for g in gaps))
    for (_, delay), gap in zip(retries, gaps, strict=False):
        assert gap >= delay - 0.05, (delay, gap)
    print(
        f"Redis down for {down_for:.1f}s; observed retry delays (s): "
        + ", ".join(f"{d:.3f}" for d in delays)
    )
    # Growing: each delay is base * 2**n minus up to `jitter` of it, capped.
    for n, delay in enumerate(delays[:4]):
        nominal = min(cap, base * 2**n)
        assert nominal * (1 - jitter) - 1e-3 <= delay <= nominal + 1e-3, (n, delay, nominal)
    uncapped = [d for n, d in enumerate(delays[:4]) if base * 2**n < cap]
    assert all(a < b for a, b in itertools.pairwise(uncapped)), delays
    # Jittered: not exactly the nominal values.
    if jitter > 0:
        assert any(abs(d - min(cap, base * 2**n)) > 1e-3 for n, d in enumerate(delays[:4]))

    # Recovery once Redis is back.
    qj = operator.wait_phase(namespace, "outage", ("Succeeded", "Failed"), timeout=120)
    assert qj["status"]["phase"] == "Succeeded"
    assert qj["status"]["counts"]["succeeded"] == 3
