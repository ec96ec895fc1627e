"""batch/v1 Jobs whose pods run through the node (the localkube agent locally): success, retries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.cluster import Cluster

IMAGE = "queuejob:dev"
pytestmark = pytest.mark.timeout(240)


def job(
    name: str,
    command: list[str],
    *,
    completions: int = 1,
    backoff_limit: int = 0,
    parallelism: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": IMAGE, "command": command}],
                }
            },
        },
    }


def pods_of(cluster: Cluster, namespace: str, job_name: str) -> list[dict[str, Any]]:
    listing = cluster.kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job_name}"
    )
    return list(listing["items"])


def test_cp_job_runs_to_complete(cluster: Cluster, namespace: str) -> None:
    script = "import os; print('hello from', os.environ['HOSTNAME'])"
    manifest = job("hello", ["python3", "-c", script], completions=2, parallelism=2)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Complete",
        "job/hello",
        "--timeout=150s",
        timeout=170,
    )

    status = cluster.kubectl_json("get", "job", "hello", "-n", namespace)["status"]
    assert status["succeeded"] == 2
    assert status.get("failed", 0) == 0
    pods = pods_of(cluster, namespace, "hello")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Succeeded"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 0
        name = pod["metadata"]["name"]
        assert f"hello from {name}" in cluster.pod_logs(namespace, name)
        via_api = cluster.kubectl("logs", "-n", namespace, name).stdout
        assert f"hello from {name}" in via_api, "pods/log must reach the node (kubelet API)"


def test_cp_failing_job_is_retried_until_backoff_limit(cluster: Cluster, namespace: str) -> None:
    manifest = job("fails", ["sh", "-c", "echo attempt; exit 3"], backoff_limit=1)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Failed",
        "job/fails",
        "--timeout=180s",
        timeout=200,
    )

    job_obj = cluster.kubectl_json("get", "job", "fails", "-n", namespace)
    failed = [c for c in job_obj["status"]["conditions"] if c["type"] == "Failed"]
    assert failed[0]["reason"] == "BackoffLimitExceeded"
    assert job_obj["status"]["failed"] == 2, "backoffLimit=1 means one retry: two pods"
    pods = pods_of(cluster, namespace, "fails")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 3
        assert "attempt" in cluster.pod_logs(namespace, pod["metadata"]["name"])
