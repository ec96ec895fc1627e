"""Life cycle: 50 items, parallelism 3 -> Succeeded with the right counts; the workers log in
as the QueueJob's own Redis user (the Secret holds no admin password); delete cleans up, the
Redis user included."""

from __future__ import annotations

import base64
import re

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for
from workqueue import acl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LABEL = "workqueue.example.com/queuejob"


def _pod_names(cluster: Cluster, namespace: str, qj: str) -> list[str]:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"{LABEL}={qj}")
    return [p["metadata"]["name"] for p in pods["items"]]


def test_lifecycle_50_items(cluster: Cluster, operator: OperatorHandle, namespace: str) -> None:
    items = [f"item-{i:02d}" for i in range(50)]
    operator.apply(
        queuejob(
            "life",
            namespace,
            items=items,
            parallelism=3,
            leaseSeconds=10,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"}]},
        )
    )
    qj = operator.wait_phase(namespace, "life", ("Succeeded", "Failed"), timeout=180)
    status = qj["status"]
    assert status["phase"] == "Succeeded", status
    assert status["counts"] == {
        "total": 50,
        "pending": 0,
        "leased": 0,
        "succeeded": 50,
        "failed": 0,
        "retries": status["counts"]["retries"],
    }
    assert status["progress"] == "50/50"
    assert status["jobName"] == "life-workers"
    assert status["startTime"] and status["completionTime"]
    complete = {c["type"]: c for c in status["conditions"]}
    assert complete["Complete"]["status"] == "True"
    assert complete["Seeded"]["status"] == "True"

    # Every item was processed, by the queue's record and by the workers' own logs.
    queue = operator.queue(namespace, "life")
    assert queue.succeeded_items() == set(items)
    done: set[str] = set()
    for pod in _pod_names(cluster, namespace, "life"):
        done |= set(re.findall(r"item '([^']+)' done", cluster.pod_logs(namespace, pod)))
    assert done == set(items)

    # The Job: owned by the QueueJob, Indexed, parallelism from the spec, PSA-restricted.
    job = cluster.kubectl_json("get", "job", "life-workers", "-n", namespace)
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "QueueJob",
        "life",
        qj["metadata"]["uid"],
    )
    assert owner["controller"] is True
    # Indexed: one index per worker, each completed by a worker that exited 0 at the end.
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["parallelism"] == job["spec"]["completions"] == 3
    status = wait_for(
        lambda: (
            s
            if (
                s := cluster.kubectl_json("get", "job", "life-workers", "-n", namespace)["status"]
            ).get("completedIndexes")
            == "0-2"
            else None
        ),
        60,
        "the Job's indexes 0-2 to complete",
    )
    assert status.get("failed", 0) == 0, status
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    password_env = next(e for e in container["env"] if e["name"] == "QUEUEJOB_REDIS_PASSWORD")
    assert password_env["valueFrom"]["secretKeyRef"]["name"] == "life-redis"
    assert operator.redis_password is None or all(
        operator.redis_password not in str(e.get("value", "")) for e in container["env"]
    )
    # The Secret in the QueueJob's namespace holds the QueueJob's own Redis user, never the
    # operator's password; that user exists on the operator's Redis with the queue's keys only.
    secret = cluster.kubectl_json("get", "secret", "life-redis", "-n", namespace)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    queue_name = qj["status"]["queue"]
    assert set(data) == {"username", "password"}, sorted(data)
    assert data["username"] == acl.username(queue_name)
    assert operator.redis_password is None or data["password"] != operator.redis_password
    assert operator.redis_password is None or operator.redis_password not in str(secret)
    user = operator.redis().execute_command("ACL", "GETUSER", data["username"])
    assert user is not None and f"~{acl.key_pattern(queue_name)}" in str(user), user
    user_env = next(e for e in container["env"] if e["name"] == "QUEUEJOB_REDIS_USERNAME")
    assert user_env["valueFrom"]["secretKeyRef"] == {
        "name": "life-redis",
        "key": "username",
        "optional": True,
    }
    wait_for(
        lambda: (
            cluster.kubectl_json("get", "job", "life-workers", "-n", namespace)
            .get("status", {})
            .get("succeeded")
        ),
        60,
        "the Job to succeed",
    )

    # Prometheus metrics with client-go's workqueue names, for the handlers and for the queue.
    samples = operator.metrics()
    assert samples[("workqueue_adds_total", (("name", f"{namespace}/life"),))] == 50
    assert samples[("workqueue_depth", (("name", f"{namespace}/life"),))] == 0
    assert samples[("workqueue_work_duration_seconds_count", (("name", "handler:reconcile"),))] >= 1
    for metric in (
        "workqueue_retries_total",
        "workqueue_queue_duration_seconds_count",
        "workqueue_unfinished_work_seconds",
        "workqueue_longest_running_processor_seconds",
    ):
        assert (metric, (("name", "handler:reconcile"),)) in samples

    # The workers exit once the queue is done; the status follows them down to zero.
    wait_for(
        lambda: operator.get_qj(namespace, "life")["status"].get("activeWorkers") == 0,
        60,
        "activeWorkers to drop to 0",
    )

    # An Event per phase change.
    events = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=life"
    )
    messages = " | ".join(e.get("message", "") for e in events["items"])
    assert "-> Running" in messages and "Running -> Succeeded" in messages, messages
    # Seeded and started in one handler run: straight to Running, no Event for a Pending phase
    # that was never written.
    assert "Phase None -> Running" in messages and "-> Pending" not in messages, messages

    # Delete: the finalizer removes the Redis keys; Job, pods and Secret go by GC.
    assert queue.keys_in_use()
    cluster.kubectl("delete", "queuejob", "life", "-n", namespace, "--timeout=60s")
    assert queue.keys_in_use() == []
    assert operator.redis().execute_command("ACL", "GETUSER", data["username"]) is None
    wait_for(
        lambda: (
            cluster.kubectl("get", "job", "life-workers", "-n", namespace, check=False).returncode
            != 0
        ),
        90,
        "the Job to be deleted",
    )
    wait_for(lambda: not _pod_names(cluster, namespace, "life"), 90, "the pods to be deleted")
    wait_for(
        lambda: (
            cluster.kubectl("get", "secret", "life-redis", "-n", namespace, check=False).returncode
            != 0
        ),
        90,
        "the Secret to go",
    )
