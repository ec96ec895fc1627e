"""Losing a node during a QueueJob, on the multi-node cluster (``--cluster=local-kubelet
--nodes=3``: real kubelets, containerd and kube-proxy, each node in its own network namespace,
the operator deployed with its two replicas, Redis in the cluster).

- drain: the workers of a drained node are evicted (disruptions, not failures), their items go
  back, the slots refill on the other nodes, the operator's PDB keeps a replica Ready;
- partition (the Node kept): the node's network is cut and its workers stall mid-item
  (SIGSTOP, a paused VM); it goes NotReady; the operator lets
  its workers go after ``QUEUEJOB_NODE_LOST_SECONDS`` and the slots refill; then the node
  comes back while its old workers still run, and their stale leases complete nothing;
- reclaimed VM (the Node deleted): the node is cut off and its Node deleted; the slots refill;
- the operator across nodes: the two replicas run on different nodes; cutting off the
  leader's node hands the Lease to the other one, and no QueueJob is stuck or provisioned
  twice.

Every scenario checks that each item succeeded exactly once. The victim is never the node of
Redis (losing Redis is another fault, see test_e2e_failover.py) and, except in the failover
test, never the leader's. Times are printed (``-s``) for the docs, never asserted: the tests
wait on conditions with generous deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for
from queuejob import naming

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SYSTEM = "queuejob-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=queuejob-operator"
IGNORED = "batch.kubernetes.io/job-index-ignored-failure-count"
COUNTED = "batch.kubernetes.io/job-index-failure-count"
INDEX = "batch.kubernetes.io/job-completion-index"
#: Items of 0.5 s for 4 workers: long enough to outlast a node's loss and its replacement.
ITEMS = 600
WORK_SECONDS = "0.5"


@pytest.fixture
def nodes(cluster: Cluster) -> Iterator[list[str]]:
    """The real nodes' names; every node uncordoned and its network healed afterwards."""
    if len(cluster.nodes) < 3:
        pytest.skip(
            "needs the multi-node cluster with 3 nodes (--cluster=local-kubelet --nodes=3): "
            f"this cluster has {len(cluster.nodes)} real nodes in network namespaces"
        )
    names = [n.name for n in cluster.nodes]
    try:
        yield names
    finally:
        for node in cluster.nodes:
            node.thaw()
            node.heal()
        for name in names:
            cluster.kubectl("uncordon", name, check=False)
        wait_for(lambda: all(_ready(cluster, n) for n in names), 240, "every node Ready again")


def _node(cluster: Cluster, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "node", name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _ready(cluster: Cluster, name: str) -> bool:
    node = _node(cluster, name)
    return node is not None and _condition(node, "Ready") == "True"


def _condition(node: dict[str, Any], kind: str) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return None


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return list(cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"])


def _workers(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return _pods(cluster, namespace, f"{naming.QUEUEJOB_LABEL}={name}")


def _running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def _leader_pod(cluster: Cluster) -> str | None:
    lease = cluster.kubectl_json("get", "lease", "queuejob-operator", "-n", SYSTEM)
    return str(lease["spec"].get("holderIdentity") or "").rpartition("_")[0] or None


def _placement(cluster: Cluster) -> tuple[dict[str, str], str]:
    """(operator pod -> node, Redis node)."""
    operators = {
        p["metadata"]["name"]: p["spec"].get("nodeName", "")
        for p in _running(_pods(cluster, SYSTEM, OPERATOR_SELECTOR))
    }
    [redis] = _running(_pods(cluster, SYSTEM, "app.kubernetes.io/name=redis"))
    return operators, str(redis["spec"]["nodeName"])


def _victim(cluster: Cluster, names: list[str], prefer_operator: bool) -> str:
    """A node that holds neither Redis nor the leader; with ``prefer_operator`` one that runs
    the standby replica if there is such a node."""
    operators, redis_node = _placement(cluster)
    leader = _leader_pod(cluster)
    leader_node = operators.get(leader or "", "")
    candidates = [n for n in names if n not in (redis_node, leader_node)]
    assert candidates, f"no node free of Redis ({redis_node}) and the leader ({leader_node})"
    standby_nodes = {node for pod, node in operators.items() if pod != leader}
    if prefer_operator:
        candidates.sort(key=lambda n: n not in standby_nodes)
    print(f"victim {candidates[0]} (Redis on {redis_node}, leader on {leader_node})")
    return candidates[0]


def _evacuate_dns(cluster: Cluster, node: str) -> None:
    """Move CoreDNS off ``node`` (cordoned meanwhile): a lost node would take the cluster's DNS
    with it for 300 s (its pods' default tolerations), and new workers find Redis by name."""
    pods = [
        p
        for p in _running(_pods(cluster, "kube-system", "k8s-app=kube-dns"))
        if p["spec"].get("nodeName") == node
    ]
    if not pods:
        return
    cluster.kubectl("cordon", node)
    try:
        for pod in pods:
            cluster.kubectl("delete", "pod", "-n", "kube-system", pod["metadata"]["name"])

        def moved() -> bool:
            fresh = _pods(cluster, "kube-system", "k8s-app=kube-dns")
            return any(
                p["spec"].get("nodeName") not in (None, node)
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions", [])
                )
                for p in fresh
            )

        wait_for(moved, 120, f"CoreDNS Ready on another node than {node}")
    finally:
        cluster.kubectl("uncordon", node)


def _clear_leftovers(cluster: Cluster, node: str, namespace: str) -> None:
    """Let the pods that earlier tests left on ``node`` go before it is drained.

    Deleting a test's namespace while its worker Job runs can leave the Job's finished pods
    Terminating for minutes or for good: the Job controller does not remove their
    ``batch.kubernetes.io/job-tracking`` finalizer (seen here on Kubernetes 1.35; reported
    upstream too), and ``kubectl drain`` waits for them until it times out. Those finalizers
    are removed here, as an administrator would, so the drain waits for this test's pods only."""
    stuck: set[str] = set()

    def foreign_terminating() -> list[dict[str, Any]]:
        pods = cluster.kubectl_json(
            "get", "pods", "-A", "--field-selector", f"spec.nodeName={node}"
        )["items"]
        return [
            p
            for p in pods
            if p["metadata"].get("deletionTimestamp")
            and p["metadata"]["namespace"] not in (namespace, SYSTEM, "kube-system")
        ]

    def gone() -> bool:
        left = foreign_terminating()
        for pod in left:  # a pod still stopping may finish and get stuck later: every poll
            meta = pod["metadata"]
            finished = pod["status"].get("phase") in ("Succeeded", "Failed")
            if finished and "batch.kubernetes.io/job-tracking" in (meta.get("finalizers") or []):
                stuck.add(f"{meta['namespace']}/{meta['name']}")
                remove = json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])
                cluster.kubectl(
                    "patch", "pod", meta["name"], "-n", meta["namespace"], "--type=json",
                    "-p", remove, check=False,
                )  # fmt: skip
        return not left

    wait_for(gone, 180, f"earlier tests' pods gone from {node}", interval=2)
    if stuck:
        print(f"job-tracking finalizers removed from earlier tests' pods on {node}: {stuck}")


def _start_spread(
    cluster: Cluster,
    operator: OperatorHandle,
    namespace: str,
    name: str,
    victim: str,
    names: list[str],
    lease_seconds: int = 10,
) -> tuple[list[dict[str, Any]], list[str]]:
    """A QueueJob of 4 workers: 2 on ``victim``, 2 on the other nodes (cordons steer the
    scheduler). Returns the victim's worker pods and the items."""
    _evacuate_dns(cluster, victim)
    items = [f"{name}-{i}" for i in range(ITEMS)]
    others = [n for n in names if n != victim]
    env = [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": WORK_SECONDS}]
    for n in others:
        cluster.kubectl("cordon", n)
    try:
        operator.apply(
            queuejob(
                name,
                namespace,
                items=items,
                parallelism=2,
                leaseSeconds=lease_seconds,
                worker={"env": env},
            )
        )
        on_victim = wait_for(
            lambda: (
                p
                if len(p := [w for w in _running(_workers(cluster, namespace, name))
                             if w["spec"]["nodeName"] == victim]) == 2
                else None
            ),
            180,
            f"2 workers Running on {victim}",
        )  # fmt: skip
    finally:
        for n in others:
            cluster.kubectl("uncordon", n)
    cluster.kubectl("cordon", victim)
    try:
        cluster.kubectl(
            "patch", "queuejob", name, "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": {"parallelism": 4}}),
        )  # fmt: skip
        wait_for(
            lambda: len(_running(_workers(cluster, namespace, name))) == 4,
            180,
            "4 workers Running",
        )
    finally:
        cluster.kubectl("uncordon", victim)
    spread = sorted({w["spec"]["nodeName"] for w in _running(_workers(cluster, namespace, name))})
    print(f"workers on {spread}")
    assert len(spread) >= 2, spread
    return list(on_victim), items


def _wait_refilled(
    cluster: Cluster,
    namespace: str,
    name: str,
    indexes: dict[str, str],
    victim: str,
    since: float,
) -> dict[str, float]:
    """Wait until 4 workers run, none of them a lost one (``indexes``: pod name -> its index)
    nor on ``victim``; returns, per lost index, the seconds from ``since`` until its slot ran
    again."""
    gone = set(indexes)
    back: dict[str, float] = {}
    lost = set(indexes.values())

    def refilled() -> bool:
        pods = _running(_workers(cluster, namespace, name))
        for p in pods:
            index = p["metadata"]["annotations"][INDEX]
            if index in lost and p["metadata"]["name"] not in gone:
                back.setdefault(index, time.monotonic() - since)
        fresh = [p for p in pods if p["metadata"]["name"] not in gone]
        return len(fresh) == 4 and all(p["spec"]["nodeName"] != victim for p in fresh)

    wait_for(refilled, 300, "4 workers Running again, none on the lost node", interval=0.5)
    return back


def _replacements_not_counted(cluster: Cluster, namespace: str, name: str, gone: set[str]) -> None:
    job = cluster.kubectl_json("get", "job", naming.job_name(name), "-n", namespace)
    assert job["status"].get("failed", 0) == 0, job["status"]
    assert not job["status"].get("failedIndexes"), job["status"]
    for pod in _running(_workers(cluster, namespace, name)):
        annotations = pod["metadata"]["annotations"]
        assert annotations.get(COUNTED, "0") == "0", annotations


def _finished_once(operator: OperatorHandle, namespace: str, name: str, items: list[str]) -> None:
    qj = operator.wait_phase(namespace, name, ("Succeeded", "Failed"), timeout=600)
    assert qj["status"]["phase"] == "Succeeded", qj["status"]
    counts = qj["status"]["counts"]
    assert counts["succeeded"] == len(items) and counts["failed"] == 0, counts
    assert operator.queue(namespace, name).succeeded_items() == set(items)


def _holders(operator: OperatorHandle, namespace: str, name: str) -> dict[str, str]:
    return {le.item: le.worker_id for le in operator.queue(namespace, name).all_leases()}


def _frozen_leases(
    operator: OperatorHandle, namespace: str, name: str, workers: set[str]
) -> dict[str, tuple[str, float | None]]:
    """item -> (worker, lease time) of the current leases held by ``workers``."""
    return {
        le.item: (le.worker_id, le.leased_at)
        for le in operator.queue(namespace, name).all_leases()
        if le.worker_id in workers
    }


def _completed_by(
    operator: OperatorHandle, namespace: str, name: str, item: str
) -> tuple[str, float | None]:
    """(worker, lease time) of the lease that completed ``item``: the succeeded hash keeps its
    token, ``nonce@leased_ms.i:worker``."""
    queue = operator.queue(namespace, name)
    token = str(queue.client.hget(queue.queue_keys.key("succeeded"), item))
    head, _, worker = token.partition(":")
    _, at, stamp = head.partition("@")
    return worker, (int(stamp.split(".", 1)[0]) / 1e3 if at else None)


def test_drain_evicts_workers_as_disruptions_and_the_pdb_keeps_an_operator(
    cluster: Cluster, operator: OperatorHandle, namespace: str, nodes: list[str]
) -> None:
    victim = _victim(cluster, nodes, prefer_operator=True)
    old, items = _start_spread(cluster, operator, namespace, "drain", victim, nodes)
    gone = {p["metadata"]["name"] for p in old}
    indexes = {p["metadata"]["name"]: p["metadata"]["annotations"][INDEX] for p in old}
    ready_operators: list[int] = []
    stop = threading.Event()

    def watch_operators() -> None:
        while not stop.is_set():
            pods = _pods(cluster, SYSTEM, OPERATOR_SELECTOR)
            ready_operators.append(
                sum(
                    1
                    for p in pods
                    if not p["metadata"].get("deletionTimestamp")
                    and any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in p["status"].get("conditions", [])
                    )
                )
            )
            stop.wait(0.5)

    _clear_leftovers(cluster, victim, namespace)
    watcher = threading.Thread(target=watch_operators, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        cluster.kubectl(
            "drain", victim, "--ignore-daemonsets", "--delete-emptydir-data", "--force",
            "--timeout=240s",
            timeout=300,
        )  # fmt: skip
        drained = time.monotonic() - started
        back = _wait_refilled(cluster, namespace, "drain", indexes, victim, started)
    finally:
        stop.set()
        watcher.join()
    print(
        f"DRAIN: kubectl drain took {drained:.1f}s; slots working again after "
        + ", ".join(f"index {i}: {t:.1f}s" for i, t in sorted(back.items()))
        + f"; short of workers for {max(back.values()):.1f}s"
    )
    assert min(ready_operators) >= 1, ready_operators  # the PDB kept a replica Ready
    _replacements_not_counted(cluster, namespace, "drain", gone)
    for pod in _running(_workers(cluster, namespace, "drain")):
        if pod["metadata"]["annotations"][INDEX] in back:
            assert pod["metadata"]["annotations"].get(IGNORED) == "1", pod["metadata"]
    cluster.kubectl("uncordon", victim)
    _finished_once(operator, namespace, "drain", items)


def test_partitioned_node_loses_its_slots_and_its_stale_leases_complete_nothing(
    cluster: Cluster, operator: OperatorHandle, namespace: str, nodes: list[str]
) -> None:
    lost_after = int(operator.setting("QUEUEJOB_NODE_LOST_SECONDS", "20"))
    victim = _victim(cluster, nodes, prefer_operator=False)
    node = cluster.node(victim)
    old, items = _start_spread(cluster, operator, namespace, "part", victim, nodes, 6)
    gone = {p["metadata"]["name"] for p in old}
    indexes = {p["metadata"]["name"]: p["metadata"]["annotations"][INDEX] for p in old}
    wait_for(
        lambda: len([w for w in _holders(operator, namespace, "part").values() if w in gone]) == 2,
        60,
        "both of the victim's workers holding an item",
    )
    # The node is cut off and its workers stall mid-item (SIGSTOP), as in a paused VM: when it
    # rejoins they resume exactly there, holding leases that are no longer theirs.
    pids = [cluster.container_pid(namespace, p["metadata"]["name"]) for p in old]
    node.cut()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    cut_at = time.monotonic()
    # What they hold now they hold through the freeze (items take 0.5 s, a lease call ~1 ms).
    frozen = _frozen_leases(operator, namespace, "part", gone)
    held = {i: w for i, (w, _) in frozen.items()}
    print(f"frozen mid-item: {held}")
    assert held, "neither frozen worker held an item"
    try:
        wait_for(lambda: not _ready(cluster, victim), 180, f"{victim} NotReady", interval=0.5)
        not_ready = time.monotonic() - cut_at
        back = _wait_refilled(cluster, namespace, "part", indexes, victim, cut_at)
    except BaseException:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        raise
    print(
        f"PARTITION (Node kept, QUEUEJOB_NODE_LOST_SECONDS={lost_after}): NotReady "
        f"{not_ready:.1f}s after the cut; slots working again "
        + ", ".join(f"index {i}: {t - not_ready:.1f}s" for i, t in sorted(back.items()))
        + " after NotReady"
    )
    _replacements_not_counted(cluster, namespace, "part", gone)
    # The cut-off workers could not renew: their leases expired and were taken back.
    try:
        wait_for(
            lambda: all(_holders(operator, namespace, "part").get(i) not in gone for i in held),
            120,
            "the cut-off workers' leases taken back",
        )
    except BaseException:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        raise
    # The node rejoins while its old workers still run: its kubelet (which would stop them,
    # their pods being deleted) is frozen first, so they meet their stale leases; containerd
    # runs on and writes their output to the pod log files.
    node.freeze(["kubelet"])
    node.heal()
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    logs = node.state_dir / "pod-logs"

    def old_logs() -> str:
        return "".join(
            f.read_text(errors="replace")
            for pod in gone
            for f in logs.glob(f"{namespace}_{pod}_*/worker/*.log")
        )

    def stale_reported() -> bool:
        # Each held item ends in one of the worker's three ways of not reporting a stale
        # result: its renewal is refused (the heartbeat), its acknowledgement is refused, or
        # Redis stays unreachable until the lease has run out (the acknowledgement given up).
        text = old_logs()
        return all(
            any(
                f"{what} {item!r}" in text or f"item {item!r}: {what}" in text
                for what in ("lost the lease on", "result dropped", "result given up")
            )
            for item in held
        )

    try:
        wait_for(stale_reported, 120, "the old workers told their leases are stale", interval=1)
    except AssertionError:
        print(f"old workers' logs:\n{old_logs()[-4000:]}")
        raise
    node.thaw()
    _finished_once(operator, namespace, "part", items)
    # No stale lease completed its item. A resumed old worker may lease an item afresh (one of
    # the held items, taken back and not yet run again) and complete it: that is a new lease.
    for item in held:
        assert _completed_by(operator, namespace, "part", item) != frozen[item], item
    events = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", "reason=WorkerNodeLost"
    )["items"]
    assert sum(e.get("count", 1) for e in events) >= 2, events


def test_reclaimed_node_deleted_loses_no_item(
    cluster: Cluster, operator: OperatorHandle, namespace: str, nodes: list[str]
) -> None:
    victim = _victim(cluster, nodes, prefer_operator=False)
    node = cluster.node(victim)
    old, items = _start_spread(cluster, operator, namespace, "gone", victim, nodes)
    gone = {p["metadata"]["name"] for p in old}
    indexes = {p["metadata"]["name"]: p["metadata"]["annotations"][INDEX] for p in old}
    node.cut()  # the VM is gone: nothing of it reaches the cluster any more
    wait_for(lambda: not _ready(cluster, victim), 180, f"{victim} NotReady", interval=0.5)
    cluster.kubectl("delete", "node", victim, "--wait=false")
    deleted_at = time.monotonic()
    back = _wait_refilled(cluster, namespace, "gone", indexes, victim, deleted_at)
    print(
        "RECLAIMED (Node deleted after NotReady): slots working again "
        + ", ".join(f"index {i}: {t:.1f}s" for i, t in sorted(back.items()))
        + " after the deletion"
    )
    _replacements_not_counted(cluster, namespace, "gone", gone)
    _finished_once(operator, namespace, "gone", items)
    # A new VM of the same name joins: its Node as localkube makes it (fixed podCIDR, labels),
    # then its kubelet (the same one, reconnected) posts its status. The fixture waits for it.
    node.heal()
    if _node(cluster, victim) is None:
        cluster.kubectl("create", "-f", "-", input=json.dumps(node.node_object()), check=False)
    wait_for(lambda: _ready(cluster, victim), 180, f"{victim} Ready again")


def test_operator_replicas_on_two_nodes_and_leader_node_loss_hands_over(
    cluster: Cluster, operator: OperatorHandle, namespace: str, nodes: list[str]
) -> None:
    operators, redis_node = _placement(cluster)
    assert len(operators) == 2, operators
    assert len(set(operators.values())) == 2, f"both replicas on one node: {operators}"
    leader = wait_for(lambda: _leader_pod(cluster), 60, "a leader")
    if operators[leader] == redis_node:
        # Cutting this node would take Redis too: hand leadership to the other replica first
        # (a deleted leader releases the Lease on its way out).
        cluster.kubectl("delete", "pod", leader, "-n", SYSTEM, "--timeout=120s", timeout=150)
        leader = wait_for(
            lambda: p if (p := _leader_pod(cluster)) not in (None, leader) else None,
            120,
            "a new leader",
        )
        operators, redis_node = _placement(cluster)
    leader_node = operators[leader]
    assert leader_node != redis_node
    _evacuate_dns(cluster, leader_node)
    items = [f"ha-{i}" for i in range(ITEMS)]
    env = [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": WORK_SECONDS}]
    operator.apply(queuejob("ha", namespace, items=items, parallelism=4, worker={"env": env}))
    wait_for(lambda: len(_running(_workers(cluster, namespace, "ha"))) == 4, 180, "4 workers")
    job_before = cluster.kubectl_json("get", "job", naming.job_name("ha"), "-n", namespace)
    secret_before = cluster.kubectl_json("get", "secret", naming.secret_name("ha"), "-n", namespace)
    lease = cluster.kubectl_json("get", "lease", "queuejob-operator", "-n", SYSTEM)
    duration = int(lease["spec"]["leaseDurationSeconds"])

    node = cluster.node(leader_node)
    node.cut()
    cut_at = time.monotonic()
    new_leader = wait_for(
        lambda: p if (p := _leader_pod(cluster)) not in (None, leader) else None,
        duration + 120,
        "the standby to take the Lease",
        interval=0.2,
    )
    took = time.monotonic() - cut_at
    print(
        f"LEADER NODE LOST: {new_leader} on {operators.get(new_leader)} took the Lease "
        f"{took:.1f}s after {leader_node} was cut off (lease duration {duration}s)"
    )
    _finished_once(operator, namespace, "ha", items)
    job_after = cluster.kubectl_json("get", "job", naming.job_name("ha"), "-n", namespace)
    secret_after = cluster.kubectl_json("get", "secret", naming.secret_name("ha"), "-n", namespace)
    # Provisioned once: the same Job and Secret as before the failover.
    assert job_after["metadata"]["uid"] == job_before["metadata"]["uid"]
    assert secret_after["metadata"]["uid"] == secret_before["metadata"]["uid"]
    node.heal()
    wait_for(lambda: _ready(cluster, leader_node), 180, f"{leader_node} Ready again")

    def two_ready() -> bool:  # the cut-off leader exited (renew deadline) and came back
        return (
            len(
                [
                    p
                    for p in _running(_pods(cluster, SYSTEM, OPERATOR_SELECTOR))
                    if any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in p["status"].get("conditions", [])
                    )
                ]
            )
            == 2
        )

    wait_for(two_ready, 240, "2 operator replicas Ready again")
