"""Scale: `kubectl scale qj` changes the Job's parallelism (and completions: the Job is Indexed),
to 0 and back without completing the Job; suspend/resume patches the Job."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for
from queuejob import naming

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _job(cluster: Cluster, namespace: str, name: str = "scaled") -> dict[str, Any]:
    spec: dict[str, Any] = cluster.kubectl_json("get", "job", f"{name}-workers", "-n", namespace)[
        "spec"
    ]
    return spec


def _job_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    job = cluster.kubectl_json("get", "job", f"{name}-workers", "-n", namespace)
    return dict(job.get("status") or {})


def _running(cluster: Cluster, namespace: str, name: str) -> int:
    selector = f"{naming.QUEUEJOB_LABEL}={name}"
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return sum(
        1
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    )


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
    # Indexed: completions moves with parallelism (the API's rule for Indexed Jobs).
    assert _job(cluster, namespace)["completions"] == 4

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


def test_scale_to_zero_and_back_keeps_the_job_running(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    items = [f"z-{i}" for i in range(150)]
    operator.apply(
        queuejob(
            "zero",
            namespace,
            items=items,
            parallelism=2,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.3"}]},
        )
    )
    wait_for(lambda: _running(cluster, namespace, "zero") == 2, 120, "2 workers Running")

    cluster.kubectl("scale", "queuejob/zero", "-n", namespace, "--replicas=0")
    wait_for(lambda: _running(cluster, namespace, "zero") == 0, 60, "no worker Running")
    # Only parallelism went to 0: completions 0 would have completed the Job.
    spec = _job(cluster, namespace, "zero")
    assert (spec["parallelism"], spec["completions"]) == (0, 2)
    time.sleep(3)  # a Job that completed would show it by now
    status = _job_status(cluster, namespace, "zero")
    assert not [c for c in status.get("conditions", []) if c["status"] == "True"], status
    qj = operator.get_qj(namespace, "zero")
    assert qj["status"]["phase"] == "Running", qj["status"]
    assert qj["status"]["counts"]["pending"] > 0

    cluster.kubectl("scale", "queuejob/zero", "-n", namespace, "--replicas=3")
    wait_for(
        lambda: _job(cluster, namespace, "zero")["completions"] == 3,
        60,
        "the Job's completions to follow parallelism 3",
    )
    scaled_at = time.monotonic()
    # Indexes 0 and 1 may still be in their per-index backoff (10 s after their first, ignored,
    # failure: the pods stopped by the scale to 0), index 2 is new.
    wait_for(lambda: _running(cluster, namespace, "zero") == 3, 90, "3 workers Running")
    print(f"3 workers Running {time.monotonic() - scaled_at:.1f}s after scaling 0 -> 3")
    qj = operator.wait_phase(namespace, "zero", ("Succeeded", "Failed"), timeout=180)
    assert qj["status"]["phase"] == "Succeeded", qj["status"]
    assert qj["status"]["counts"]["succeeded"] == len(items)
    wait_for(
        lambda: _job_status(cluster, namespace, "zero").get("completedIndexes") == "0-2",
        60,
        "the Job's indexes 0-2 to complete",
    )
    assert _job_status(cluster, namespace, "zero").get("failed", 0) == 0


def test_longest_name_with_most_workers_gets_a_valid_indexed_job(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    # 52 characters and parallelism 100: the pods' hostname "<name>-workers-99" is 63 long.
    name = "l" * naming.MAX_QUEUEJOB_NAME
    operator.apply(queuejob(name, namespace, items=["a"], parallelism=100, suspend=True))
    qj = operator.wait_phase(namespace, name, ("Suspended", "Failed"), timeout=60)
    assert qj["status"]["phase"] == "Suspended", qj["status"]
    spec = _job(cluster, namespace, name)
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
        "Indexed",
        100,
        100,
    )


def test_suspend_while_running_and_resume(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    items = [f"p-{i}" for i in range(120)]
    operator.apply(
        queuejob(
            "pause",
            namespace,
            items=items,
            parallelism=2,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.3"}]},
        )
    )
    wait_for(lambda: _running(cluster, namespace, "pause") == 2, 120, "2 workers Running")
    suspend = '{"spec": {"suspend": true}}'
    cluster.kubectl("patch", "queuejob/pause", "-n", namespace, "--type=merge", "-p", suspend)
    operator.wait_phase(namespace, "pause", ("Suspended",), timeout=60)
    wait_for(lambda: _running(cluster, namespace, "pause") == 0, 60, "no worker Running")
    assert _job(cluster, namespace, "pause")["completions"] == 2
    assert operator.get_qj(namespace, "pause")["status"]["counts"]["pending"] > 0

    resume = '{"spec": {"suspend": false}}'
    cluster.kubectl("patch", "queuejob/pause", "-n", namespace, "--type=merge", "-p", resume)
    resumed_at = time.monotonic()
    # Measured: 2.3 s (pods stopped by a suspend do not add to their index's backoff here);
    # the bound allows for a 10 s per-index backoff plus a slow start.
    wait_for(lambda: _running(cluster, namespace, "pause") == 2, 60, "2 workers Running again")
    print(f"2 workers Running {time.monotonic() - resumed_at:.1f}s after resuming")
    qj = operator.wait_phase(namespace, "pause", ("Succeeded", "Failed"), timeout=180)
    assert qj["status"]["phase"] == "Succeeded", qj["status"]
    assert qj["status"]["counts"]["succeeded"] == len(items)
    status = _job_status(cluster, namespace, "pause")
    assert status.get("failed", 0) == 0 and not status.get("failedIndexes"), status
