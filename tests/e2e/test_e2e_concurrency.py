"""Concurrency: 100 QueueJobs run handlers in parallel up to the operator-wide limit, no more."""

from __future__ import annotations

import json
import time

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import (
    OperatorHandle,
    histogram,
    histogram_delta,
    observed_max,
    queuejob,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

COUNT = 100
METRIC = "queuejob_handler_concurrency"


def test_operator_wide_concurrency_limit(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    samples = operator.metrics()
    limit = samples[("queuejob_handler_concurrency_limit", ())]
    before = histogram(samples, METRIC)

    manifests = [
        queuejob(f"qj-{i:03d}", namespace, items=[f"i-{i}"], suspend=True) for i in range(COUNT)
    ]
    started = time.monotonic()
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}),
    )

    def all_suspended() -> bool:
        listed = cluster.kubectl_json("get", "queuejobs", "-n", namespace)["items"]
        phases = [qj.get("status", {}).get("phase") for qj in listed]
        return len(listed) == COUNT and all(p == "Suspended" for p in phases)

    wait_for(all_suspended, 240, f"{COUNT} QueueJobs to be Suspended", interval=1)
    print(f"{COUNT} QueueJobs created and Suspended in {time.monotonic() - started:.1f}s")
    delta = histogram_delta(before, histogram(operator.metrics(), METRIC))
    measured = observed_max(delta)
    print(
        f"handler starts: {delta['count']:.0f}; limit {limit:.0f}; measured max in flight "
        f"{measured:.0f}"
    )
    assert delta["count"] >= COUNT
    assert measured == limit

    # Remove them now (their finalizers need the operator) so later tests run on a quiet operator.
    started = time.monotonic()
    cluster.kubectl("delete", "queuejobs", "--all", "-n", namespace, "--wait=false")
    wait_for(
        lambda: not cluster.kubectl_json("get", "queuejobs", "-n", namespace)["items"],
        180,
        f"{COUNT} QueueJobs to be deleted",
        interval=1,
    )
    print(f"deleted {COUNT} QueueJobs in {time.monotonic() - started:.1f}s")
