"""Scale: `kubectl scale qj` changes the Job's parallelism; suspend/resume patches the Job."""

from __future__ import annotations

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _job(cluster: Cluster, namespace: str) -> dict[str, object]:
    spec: dict[str, object] = cluster.kubectl_json("get", "job", "scaled-workers", "-n", namespace)[
        "spec"
    ]
    return spec


def test_kubectl_scale_and_resume(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    operator.apply(
        queuejob(
            "scaled",
            namespace,
            items=[f"s-{i}" for i in range(8)],
            parallelism=1,
            suspend=True,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"}]},
        )
    )
    operator.wait_phase(namespace, "scaled", ("Suspended",), timeout=60)
    job = _job(cluster, namespace)
    assert job["suspend"] is True and job["parallelism"] == 1

    cluster.kubectl("scale", "queuejob/scaled", "-n", namespace, "--replicas=4")
    assert operator.get_qj(namespace, "scaled")["spec"]["parallelism"] == 4
    wait_for(
        lambda: _job(cluster, namespace)["parallelism"] == 4,
        60,
        "the Job's parallelism to become 4",
    )

    cluster.kubectl(
        "patch",
        "queuejob/scaled",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"suspend": false}}',
    )
    wait_for(lambda: _job(cluster, namespace)["suspend"] is False, 60, "the Job to resume")
    qj = operator.wait_phase(namespace, "scaled", ("Succeeded", "Failed"), timeout=120)
    assert qj["status"]["phase"] == "Succeeded"
    assert qj["status"]["counts"]["succeeded"] == 8
