"""Autoscaling: the workers grow with a burst of items and shrink as the queue drains; autoscaling
wins over `kubectl scale` (with a Warning Event) until spec.autoscaling is removed.

The burst is added straight through the workqueue API (``LeaseQueue.seed``, what the operator
itself does), while the QueueJob runs. The trace of each run is printed (``pytest -s``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for
from queuejob import naming
from queuejob_demo.autoscaling_trace import Tracer, table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

#: Per-item command: items named first-* take 20 s, the others 1 s.
SLOW_FIRST = 'case "$QUEUEJOB_ITEM" in first-*) sleep 20 ;; *) sleep 1 ;; esac'


def _job_spec(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    job = cluster.kubectl_json("get", "job", naming.job_name(name), "-n", namespace)
    return dict(job["spec"])


def _events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def _reasons(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return [e.get("reason", "") for e in _events(cluster, namespace, name)]


def _condition(qj: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in qj.get("status", {}).get("conditions", []) if c["type"] == type_]
    return found[0] if found else {}


def test_workers_grow_with_a_burst_and_shrink_as_the_queue_drains(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    name = "burst"
    policy = {
        "minParallelism": 1,
        "maxParallelism": 4,
        "itemsPerWorker": 10,
        "scaleDownStabilizationSeconds": 3,
    }
    # The first items take 20 s each, so the QueueJob is surely still running (1 worker, 60 s
    # of work) when the burst arrives, however slow this machine is; burst items take 1 s.
    first = [f"first-{i}" for i in range(3)]
    burst = [f"burst-{i}" for i in range(100)]
    operator.apply(
        queuejob(
            name,
            namespace,
            items=first,
            parallelism=1,
            autoscaling=policy,
            leaseSeconds=30,
            worker={"command": ["sh", "-c", SLOW_FIRST]},
        )
    )
    queue = operator.queue(namespace, name)  # status.queue is written once the Job exists
    tracer = Tracer(cluster.api, queue, namespace, name, interval=1.0)
    with tracer:
        # 3 items, 10 per worker: the Job starts with 1 worker.
        assert _job_spec(cluster, namespace, name)["parallelism"] == 1
        tracer.sample()
        # The burst, while the QueueJob runs: 103 items -> 4 workers (the max).
        assert queue.seed(burst) == len(burst)

        wait_for(
            lambda: _job_spec(cluster, namespace, name)["parallelism"] == 4,
            60,
            "the Job to scale up to maxParallelism 4",
        )
        # Indexed Job: completions moves with parallelism.
        assert _job_spec(cluster, namespace, name)["completions"] == 4
        wait_for(lambda: tracer.samples and tracer.samples[-1].running == 4, 120, "4 Running")
        metrics = operator.metrics()
        label = (("name", f"{namespace}/{name}"),)
        assert metrics[("queuejob_workers_desired", label)] == 4
        assert ("queuejob_workers_current", label) in metrics

        qj = operator.wait_phase(namespace, name, ("Succeeded", "Failed"), timeout=300)
    print("\n" + table(tracer.samples), flush=True)

    assert qj["status"]["phase"] == "Succeeded", qj["status"]
    assert qj["status"]["counts"]["succeeded"] == len(first) + len(burst)
    assert qj["status"]["counts"]["failed"] == 0
    condition = _condition(qj, "Autoscaling")
    assert condition.get("status") == "True" and condition.get("reason") == "QueueDepth"

    samples = [s for s in tracer.samples if s.parallelism is not None]
    peak = max(range(len(samples)), key=lambda i: samples[i].parallelism or 0)
    assert samples[peak].parallelism == 4
    # Before the burst the queue held the first items and the Job 1 worker.
    assert samples[0].parallelism == 1 and samples[0].depth <= len(first)
    assert any(s.desired == 4 for s in samples)  # status.workers.desired followed
    # Shrinking as the queue drains: the Job went below 4 workers while items were still left.
    shrunk = [s for s in samples[peak:] if (s.parallelism or 0) < 4 and s.depth > 0]
    assert shrunk, "the Job never scaled down before the queue was empty"
    # ... and never above what the depth asked for at its peak: never flapped back up to 4.
    after_first_shrink = samples[samples.index(shrunk[0]) :]
    assert all((s.parallelism or 0) < 4 for s in after_first_shrink)
    reasons = _reasons(cluster, namespace, name)
    assert "ScaledUp" in reasons and "ScaledDown" in reasons, reasons
    # Scale-downs stopped workers gracefully: no counted pod failure, no failed index.
    job = cluster.kubectl_json("get", "job", naming.job_name(name), "-n", namespace)
    assert not job["status"].get("failedIndexes"), job["status"]


def test_autoscaling_wins_over_kubectl_scale_until_removed(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    name = "owned"
    operator.apply(
        queuejob(
            name,
            namespace,
            items=[f"slow-{i}" for i in range(20)],
            parallelism=1,
            autoscaling={"minParallelism": 1, "maxParallelism": 2, "itemsPerWorker": 10},
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "5"}]},
        )
    )
    wait_for(
        lambda: _job_spec(cluster, namespace, name)["parallelism"] == 2,
        60,
        "the Job at the autoscaler's 2 workers (20 items, 10 per worker)",
    )

    cluster.kubectl("scale", f"queuejob/{name}", "-n", namespace, "--replicas=5")
    wait_for(
        lambda: "ParallelismOverridden" in _reasons(cluster, namespace, name),
        60,
        "a Warning Event ParallelismOverridden",
    )
    event = next(
        e for e in _events(cluster, namespace, name) if e["reason"] == "ParallelismOverridden"
    )
    assert event["type"] == "Warning" and "spec.autoscaling" in event["message"], event
    generation = operator.get_qj(namespace, name)["metadata"]["generation"]
    wait_for(
        lambda: operator.get_qj(namespace, name)["status"].get("observedGeneration") == generation,
        60,
        "observedGeneration to reach the scaled spec",
    )
    qj = wait_for(
        lambda: (
            q
            if "spec.parallelism (5) is overridden"
            in _condition(q := operator.get_qj(namespace, name), "Autoscaling").get("message", "")
            else None
        ),
        60,
        "the Autoscaling condition to name the overridden spec.parallelism",
    )
    assert qj["spec"]["parallelism"] == 5
    assert _job_spec(cluster, namespace, name)["parallelism"] == 2  # autoscaling wins
    assert qj["status"]["workers"]["desired"] == 2

    remove = json.dumps([{"op": "remove", "path": "/spec/autoscaling"}])
    cluster.kubectl("patch", f"queuejob/{name}", "-n", namespace, "--type=json", "-p", remove)
    wait_for(
        lambda: _job_spec(cluster, namespace, name)["parallelism"] == 5,
        60,
        "the Job to follow spec.parallelism 5 once autoscaling is removed",
    )
    assert _job_spec(cluster, namespace, name)["completions"] == 5
    qj = wait_for(
        lambda: (
            q
            if _condition(q := operator.get_qj(namespace, name), "Autoscaling").get("status")
            == "False"
            else None
        ),
        60,
        "the Autoscaling condition to turn False",
    )
    assert _condition(qj, "Autoscaling")["reason"] == "Disabled"
    wait_for(
        lambda: operator.get_qj(namespace, name)["status"]["workers"]["desired"] == 5,
        60,
        "status.workers.desired to be spec.parallelism again",
    )
