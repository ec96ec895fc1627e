"""Per-object serialization: a burst of 50 spec updates never overlaps handlers of one object."""

from __future__ import annotations

import pytest
from kubernetes import client

from fixtures.cluster import Cluster
from fixtures.operator import (
    OperatorHandle,
    histogram,
    histogram_delta,
    observed_max,
    queuejob,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

METRIC = "queuejob_object_handler_concurrency"


def test_burst_of_updates_is_serialized(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    operator.apply(queuejob("burst", namespace, items=["x"], parallelism=1, suspend=True))
    operator.wait_phase(namespace, "burst", ("Suspended",), timeout=60)
    before = histogram(operator.metrics(), METRIC)

    api = client.CustomObjectsApi(cluster.api)
    values = [(i * 7) % 20 + 1 for i in range(50)]
    for value in values:
        api.patch_namespaced_custom_object(
            "workqueue.example.com",
            "v1alpha1",
            namespace,
            "queuejobs",
            "burst",
            {"spec": {"parallelism": value}},
        )
    last = values[-1]

    def converged() -> bool:
        job = cluster.kubectl_json("get", "job", "burst-workers", "-n", namespace)
        return bool(job["spec"]["parallelism"] == job["spec"]["completions"] == last)

    wait_for(converged, 60, f"the Job's parallelism and completions to converge to {last}")
    qj = operator.get_qj(namespace, "burst")
    assert qj["spec"]["parallelism"] == last

    delta = histogram_delta(before, histogram(operator.metrics(), METRIC))
    print(
        f"handler starts during the burst: {delta['count']:.0f}; "
        f"max handlers at once for one object: {observed_max(delta)}"
    )
    assert delta["count"] > 0
    assert observed_max(delta) == 1.0
