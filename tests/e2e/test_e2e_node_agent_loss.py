"""A lost node on the node-agent cluster: a second node agent plays the node that goes away.

The fast, root-free counterpart of ``test_e2e_nodes.py`` (which needs the multi-node cluster):
the real control plane (Job controller, scheduler, PodGC), the real operator and a real Redis,
with a second node agent registered as node ``<name>-2``. Its loss is a whole-node freeze: the
agent (the node's kubelet) and the worker processes it runs get SIGSTOP, like a paused VM or a
node cut off from everything. The node-agent cluster runs no node-lifecycle controller (see
controlplane/localkube/README.md), so the test does its part: the Node's Ready condition goes
``Unknown`` and the ``node.kubernetes.io/unreachable`` taints are set, as that controller does
after its grace period.

Checked: the operator marks the frozen node's workers Failed (``DisruptionTarget``) and deletes
them once the node has been NotReady for ``QUEUEJOB_NODE_LOST_SECONDS``; the Job refills the
slots on the other node without counting a failure; then the node rejoins while its old
workers still run: they resume holding leases that expired and were taken by other workers, and
none of them completes anything (a stale lease token is refused); every item succeeds exactly
once. Times are printed (``-s``), never asserted.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for
from queuejob import naming, nodeloss

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

IGNORED = "batch.kubernetes.io/job-index-ignored-failure-count"
COUNTED = "batch.kubernetes.io/job-index-failure-count"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def worker_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"{naming.QUEUEJOB_LABEL}={name}"
    return list(cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"])


def running_on(pods: list[dict[str, Any]], node: str | None = None) -> list[dict[str, Any]]:
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
        and (node is None or p["spec"].get("nodeName") == node)
    ]


def _pid(pod: dict[str, Any]) -> int:
    [status] = pod["status"]["containerStatuses"]
    runtime, _, ident = status["containerID"].partition("://")
    assert runtime == "localkube", status
    return int(ident)


@contextlib.contextmanager
def second_node(cluster: Cluster, name: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A second node agent registered as Node ``name``; stopped and the Node deleted after."""
    state = Path(tempfile.mkdtemp(prefix="queuejob-node2-"))
    log = (state / "agent.log").open("wb")
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localkube.node_agent",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--node-name",
            name,
            "--state-dir",
            str(state),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            node = cluster.kubectl_json("get", "node", name)
            return nodeloss.not_ready_since(node) is None and bool(node["status"]["conditions"])

        wait_for(ready, 60, f"node {name} Ready")
        yield agent, state
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(agent.pid, signal.SIGCONT)
        agent.terminate()
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        log.close()
        cluster.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)


def _mark_unreachable(cluster: Cluster, node: str) -> None:
    """What the node-lifecycle controller does to a node whose kubelet stopped posting."""
    stamp = _now()
    ready = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }
    cluster.kubectl(
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": [ready]}}),
    )
    cluster.kubectl(
        "taint",
        "node",
        node,
        "node.kubernetes.io/unreachable:NoSchedule",
        "node.kubernetes.io/unreachable:NoExecute",
        "--overwrite",
    )


def test_frozen_node_workers_are_let_go_and_their_stale_leases_complete_nothing(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    if cluster.backend != "local" or cluster.local is None:
        pytest.skip("starts a second node agent: the node-agent cluster (--cluster=local) only")
    lost_after = int(operator.setting("QUEUEJOB_NODE_LOST_SECONDS", "20"))
    assert lost_after > 0, "the operator's lost-node handling is off"
    home = cluster.local.node_name
    node2 = f"{home}-2"
    items = [f"n-{i}" for i in range(60)]
    with second_node(cluster, node2) as (agent, state):
        # All workers on the second node: cordon the first one while they start.
        cluster.kubectl("cordon", home)
        try:
            operator.apply(
                queuejob(
                    "lost",
                    namespace,
                    items=items,
                    parallelism=2,
                    leaseSeconds=4,
                    worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "3"}]},
                )
            )
            old = wait_for(
                lambda: (
                    p
                    if len(p := running_on(worker_pods(cluster, namespace, "lost"), node2)) == 2
                    else None
                ),
                120,
                f"2 workers Running on {node2}",
            )
        finally:
            cluster.kubectl("uncordon", home)
        queue = operator.queue(namespace, "lost")
        old_names = {p["metadata"]["name"] for p in old}
        # Wait until both old workers hold an item, then freeze the whole node.
        held: dict[str, str] = wait_for(
            lambda: (
                h
                if len(h := {le.item: le.worker_id for le in queue.all_leases()
                             if le.worker_id in old_names}) == 2
                else None
            ),
            60,
            "both workers holding an item",
        )  # fmt: skip
        pids = [_pid(p) for p in old]
        os.kill(agent.pid, signal.SIGSTOP)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        frozen = True
        try:
            _mark_unreachable(cluster, node2)
            not_ready_at = time.monotonic()
            print(f"node {node2} frozen and NotReady; old workers held {sorted(held)}")

            # The operator lets the old pods go; the Job refills both slots on the other node.
            def refilled() -> list[dict[str, Any]] | None:
                pods = running_on(worker_pods(cluster, namespace, "lost"), home)
                fresh = [p for p in pods if p["metadata"]["name"] not in old_names]
                return fresh if len(fresh) == 2 else None

            def old_gone() -> bool:
                names = {p["metadata"]["name"] for p in worker_pods(cluster, namespace, "lost")}
                return not names & old_names

            fresh = wait_for(refilled, 180, "2 new workers Running on the healthy node")
            refilled_at = time.monotonic()
            wait_for(old_gone, 60, "the old worker pods removed from the API")
            gone_at = time.monotonic()
            print(
                f"NODE-AGENT LOSS (node kept, QUEUEJOB_NODE_LOST_SECONDS={lost_after}): both "
                f"slots working again {refilled_at - not_ready_at:.1f}s after NotReady; old pods "
                f"gone from the API by {gone_at - not_ready_at:.1f}s"
            )
            for pod in fresh:
                annotations = pod["metadata"]["annotations"]
                assert annotations.get(IGNORED) == "1", annotations  # a disruption, ignored
                assert annotations.get(COUNTED) == "0", annotations

            # The held items' leases expired (their holders are frozen) and were taken back.
            def taken_back() -> bool:
                holders = {le.item: le.worker_id for le in queue.all_leases()}
                return all(holders.get(item) not in old_names for item in held)

            wait_for(taken_back, 120, "the frozen workers' leases taken back")

            # The node rejoins while its old workers still run: they wake up first.
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            frozen = False
            logs = {n: state / "pods" / namespace / n / "worker.log" for n in sorted(old_names)}

            def refused() -> bool:
                text = "".join(p.read_text(errors="replace") for p in logs.values() if p.exists())
                return text.count("lost the lease") + text.count("result dropped") >= 2

            wait_for(refused, 60, "both old workers told their leases are stale")
            os.kill(agent.pid, signal.SIGCONT)
        finally:
            if frozen:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                os.kill(agent.pid, signal.SIGCONT)
        cluster.kubectl("taint", "node", node2, "node.kubernetes.io/unreachable-", check=False)

        qj = operator.wait_phase(namespace, "lost", ("Succeeded", "Failed"), timeout=300)
        assert qj["status"]["phase"] == "Succeeded", qj["status"]
        assert qj["status"]["counts"]["succeeded"] == len(items)
        assert qj["status"]["counts"]["failed"] == 0, qj["status"]["counts"]
        assert queue.succeeded_items() == set(items)
        # The items the old workers held were completed by someone else, never by them.
        succeeded_key = queue.queue_keys.key("succeeded")
        for item in held:
            token = str(queue.client.hget(succeeded_key, item))
            assert token.partition(":")[2] not in old_names, (item, token)
        job = cluster.kubectl_json("get", "job", naming.job_name("lost"), "-n", namespace)
        assert job["status"].get("failed", 0) == 0, job["status"]
        assert not job["status"].get("failedIndexes"), job["status"]
        released = operator.metrics().get(("queuejob_node_lost_pods_total", ()), 0)
        assert released >= 2, released
        events = cluster.kubectl_json(
            "get", "events", "-n", namespace, "--field-selector", "reason=WorkerNodeLost"
        )["items"]
        assert len(events) >= 2 or sum(e.get("count", 1) for e in events) >= 2, events
