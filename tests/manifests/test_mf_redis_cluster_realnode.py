"""manifests/redis-cluster-local on the real node: a Redis Cluster of 3 masters and 3 replicas in
pods, the operator and its workers on it through ``redis+cluster://``, and a master's pod deleted
while a QueueJob drains.

The module applies the overlay on top of the session's ``make deploy-local`` deployment
(``deployed_real_node``): the six nodes' StatefulSet, the create Job, and the operator's Deployment
re-rolled with the cluster's URL and ``QUEUEJOB_WORKER_WAIT_REPLICAS=1``. At the end it applies
manifests/deploy-local again (the operator back on the single Redis, which the overlay's apply
left in place) and deletes the cluster's objects and claims.

The failover: the pod of the master holding the QueueJob's queue is deleted while the nodes are
cordoned (as when its node is lost; otherwise a quick replacement pod can take its slots back
before the others notice it gone), the replica must be promoted, the nodes uncordoned, and the
pod must come back with the same node id (its PVC's nodes.conf) as a replica, at its new IP.
Both with the overlay's ``WAIT 1`` and without it (the workers' env overridden); each run checks
that every item is completed and counted once and, with ``WAIT``, that no completion was lost
(no item completed twice).

The drain's size is ``QUEUEJOB_RCLUSTER_ITEMS`` (default 20,000). The figures on the benchmarks
page come from a larger run (``QUEUEJOB_RCLUSTER_ITEMS=40000 -s``); on this shared 2-core machine
the drain goes at about 700 items/s, so 100,000 items take minutes per drain (two per run), too
long for ``make test``'s budget, while 20,000 items still leave seconds of drain on both sides of
the failover (about 15 s of pause). Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.cluster import Cluster, KubectlError, wait_for
from fixtures.realnode import RealNodeCluster
from localkube import deploy

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(2400)]
REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "manifests" / "redis-cluster-local"
DEPLOY_LOCAL = REPO / "manifests" / "deploy-local"
NS = deploy.NAMESPACE
NODES = [f"redis-cluster-{n}" for n in range(6)]
ITEMS = int(os.environ.get("QUEUEJOB_RCLUSTER_ITEMS", "20000"))
DONE = re.compile(r"^(\S+) .*item '(\d+)' done \(attempt (\d+),")
DROPPED = re.compile(r"item '(\d+)': result dropped")
#: A worker that could not deliver an acknowledgement before its lease ran out gives the result
#: up: the completion may still have run (its reply lost with the master), or the item runs again.
GIVEN_UP = re.compile(r"item '(\d+)': result given up")


def redis_cli(node: Cluster, pod: str, *args: str) -> str:
    """``redis-cli ARGS`` inside ``pod`` (authenticated by the container's REDISCLI_AUTH)."""
    return str(node.kubectl("exec", "-n", NS, pod, "--", "redis-cli", *args, timeout=60).stdout)


def cluster_info(node: Cluster, pod: str) -> dict[str, str]:
    lines = redis_cli(node, pod, "cluster", "info").splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def cluster_nodes(node: Cluster, pod: str) -> list[dict[str, Any]]:
    """CLUSTER NODES as dicts: id, ip, flags (set), master (id or "-"), slots (list of text)."""
    out = []
    for line in redis_cli(node, pod, "cluster", "nodes").splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        out.append(
            {
                "id": fields[0],
                "ip": fields[1].split(":")[0],
                "flags": set(fields[2].split(",")),
                "master": fields[3],
                "slots": fields[8:],
            }
        )
    return out


def owns(slots: list[str], slot: int) -> bool:
    for part in slots:
        if part.startswith("["):
            continue  # a slot being migrated or imported
        low, _, high = part.partition("-")
        if int(low) <= slot <= int(high or low):
            return True
    return False


def pod_ips(node: Cluster) -> dict[str, str]:
    pods = node.kubectl_json("get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=redis-cluster")
    return {p["metadata"]["name"]: p["status"].get("podIP", "") for p in pods["items"]}


def rollout(node: Cluster, what: str) -> None:
    node.kubectl("rollout", "status", what, "-n", NS, "--timeout=400s", timeout=430)


@pytest.fixture(scope="module")
def rcluster(deployed_real_node: RealNodeCluster) -> Iterator[Cluster]:
    """The overlay applied on the real node: six nodes Ready, the create Job Complete, the
    operator rolled out on the cluster's URL. Afterwards manifests/deploy-local again."""
    node = deployed_real_node.cluster
    began = time.monotonic()
    node.kubectl("apply", "-k", str(OVERLAY), timeout=180)
    try:
        rollout(node, "statefulset/redis-cluster")
        node.kubectl("wait", "--for=condition=Complete", "job/redis-cluster-create", "-n", NS,
                     "--timeout=400s", timeout=430)  # fmt: skip
        rollout(node, "deployment/queuejob-operator")
        print(f"\nredis cluster: applied, formed and the operator on it in "
              f"{time.monotonic() - began:.1f}s")  # fmt: skip
        yield node
    finally:
        node.kubectl("apply", "-k", str(DEPLOY_LOCAL), timeout=180, check=False)
        rollout(node, "deployment/queuejob-operator")
        node.kubectl("delete", "statefulset,service,poddisruptionbudget,networkpolicy",
                     "-n", NS, "-l", "app.kubernetes.io/name=redis-cluster",
                     "--timeout=120s", timeout=150, check=False)  # fmt: skip
        node.kubectl("delete", "job", "redis-cluster-create", "-n", NS, "--timeout=60s",
                     timeout=90, check=False)  # fmt: skip
        node.kubectl("delete", "pvc", "-n", NS, "-l", "app.kubernetes.io/name=redis-cluster",
                     "--wait=false", check=False)  # fmt: skip


@pytest.fixture
def ns(rcluster: Cluster) -> Iterator[str]:
    name = f"rn-rcluster-{uuid.uuid4().hex[:6]}"
    rcluster.kubectl("create", "namespace", name)
    rcluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    rcluster.kubectl("delete", "queuejobs", "--all", "-n", name, "--timeout=120s", timeout=150,
                     check=False)  # fmt: skip
    rcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_mf_redis_cluster_formed_three_masters_three_replicas(rcluster: Cluster) -> None:
    node = rcluster
    labels = node.kubectl_json("get", "namespace", NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"  # the pods passed it
    info = cluster_info(node, NODES[0])
    listing = node.kubectl("get", "pods", "-n", NS, "-o", "wide", "-l",
                           "app.kubernetes.io/name=redis-cluster").stdout  # fmt: skip
    print(f"\n{listing}{redis_cli(node, NODES[0], 'cluster', 'info')}")
    assert info["cluster_state"] == "ok", info
    assert info["cluster_slots_assigned"] == "16384" and info["cluster_size"] == "3", info
    assert info["cluster_known_nodes"] == "6", info
    nodes = cluster_nodes(node, NODES[0])
    masters = [n for n in nodes if "master" in n["flags"]]
    replicas = [n for n in nodes if "slave" in n["flags"]]
    assert len(masters) == 3 and len(replicas) == 3, nodes
    assert {r["master"] for r in replicas} == {m["id"] for m in masters}, "one replica each"
    # Every node announces its own pod's IP.
    assert {n["ip"] for n in nodes} == set(pod_ips(node).values())
    for claim in node.kubectl_json("get", "pvc", "-n", NS, "-l",
                                   "app.kubernetes.io/name=redis-cluster")["items"]:  # fmt: skip
        assert claim["status"]["phase"] == "Bound", claim["metadata"]["name"]
    pdb = node.kubectl_json("get", "pdb", "redis-cluster", "-n", NS)
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["status"]["currentHealthy"] == 6
    operator = node.kubectl_json("get", "deployment", "queuejob-operator", "-n", NS)
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["QUEUEJOB_REDIS_URL"] == "redis+cluster://redis-cluster.queuejob-system.svc:6379"
    assert (
        "creating the cluster" in node.kubectl("logs", "-n", NS, "job/redis-cluster-create").stdout
    )

    # The Job again (as after a re-apply): it sees the cluster and changes nothing.
    ids = sorted(n["id"] for n in nodes)
    node.kubectl("delete", "job", "redis-cluster-create", "-n", NS, "--timeout=60s")
    node.kubectl("apply", "-k", str(OVERLAY), timeout=180)
    node.kubectl("wait", "--for=condition=Complete", "job/redis-cluster-create", "-n", NS,
                 "--timeout=300s", timeout=330)  # fmt: skip
    logs = node.kubectl("logs", "-n", NS, "job/redis-cluster-create").stdout
    assert "the cluster exists already" in logs and "creating the cluster" not in logs, logs
    assert sorted(n["id"] for n in cluster_nodes(node, NODES[0])) == ids


def queuejob(name: str, namespace: str, worker_env: dict[str, str]) -> str:
    return json.dumps(
        {
            "apiVersion": "workqueue.example.com/v1alpha1",
            "kind": "QueueJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "itemsFrom": {"range": {"start": 0, "count": ITEMS}},
                "parallelism": 4,
                "leaseSeconds": 10,
                "worker": {"env": [{"name": k, "value": v} for k, v in worker_env.items()]},
            },
        }
    )


def stamp(text: str) -> float:
    """Seconds since the epoch of a ``kubectl logs --timestamps`` prefix (RFC 3339, ns)."""
    head, _, frac = text.rstrip("Z").partition(".")
    moment = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    return moment.timestamp() + float(f"0.{frac or '0'}")


@pytest.mark.parametrize("wait_replicas", [1, 0], ids=["wait1", "nowait"])
def test_mf_redis_cluster_master_pod_deleted_mid_drain(
    rcluster: Cluster, ns: str, wait_replicas: int
) -> None:
    node = rcluster
    # The overlay sets WAIT 1 for all workers; the no-WAIT run overrides it for its own workers.
    env = {"QUEUEJOB_DEMO_WORK_SECONDS": "0", "QUEUEJOB_REDIS_WAIT_REPLICAS": str(wait_replicas)}
    node.kubectl("apply", "-f", "-", input=queuejob("drain", ns, env))
    started = time.time()

    def status() -> dict[str, Any]:
        got: dict[str, Any] = node.kubectl_json("get", "queuejob", "drain", "-n", ns).get(
            "status", {}
        )
        return got

    def queue_name() -> str | None:
        name = status().get("queue")
        return str(name) if name else None

    queue = wait_for("the QueueJob's queue in its status", queue_name, timeout=300, interval=1)

    def succeeded() -> int:
        """Completions so far, from Redis itself: the status can lag a fast drain by seconds."""
        key = f"wq:{{{queue}}}:succeeded"
        return int(redis_cli(node, NODES[0], "-c", "hlen", key).strip() or 0)

    def quarter() -> int | None:
        now = succeeded()
        return now if now >= ITEMS // 4 else None

    wait_for("a quarter of the items done", quarter, timeout=900, interval=0.5)
    slot = int(redis_cli(node, NODES[0], "cluster", "keyslot", f"{{{queue}}}").strip())
    nodes = cluster_nodes(node, NODES[0])
    (master,) = [n for n in nodes if "master" in n["flags"] and owns(n["slots"], slot)]
    (replica,) = [n for n in nodes if n["master"] == master["id"]]
    ips = pod_ips(node)
    (victim,) = [pod for pod, ip in ips.items() if ip == master["ip"]]
    (witness,) = [pod for pod, ip in ips.items() if ip == replica["ip"]]

    def promoted() -> float | None:
        try:
            info = cluster_info(node, witness)
            now = cluster_nodes(node, witness)
        except (KubectlError, subprocess.TimeoutExpired):  # the witness may be busy: ask again
            return None
        (me,) = [n for n in now if n["id"] == replica["id"]]
        ok = (
            info.get("cluster_state") == "ok"
            and "master" in me["flags"]
            and owns(me["slots"], slot)
        )
        return time.time() if ok else None

    # Every node cordoned first, as when the pod's node is lost: a replacement pod that started
    # before the others noticed (cluster-node-timeout, 5 s) would simply take its slots back.
    hosts = node.kubectl("get", "nodes", "-o", "name").stdout.split()
    node.kubectl("cordon", *hosts)
    try:
        at_deletion = succeeded()
        deleted = time.time()
        node.kubectl("delete", "pod", victim, "-n", NS, "--wait=false")
        promoted_at = wait_for("the replica promoted, cluster_state ok", promoted, timeout=300)
    finally:
        node.kubectl("uncordon", *hosts)

    def finished() -> dict[str, Any] | None:
        now = status()
        return now if now.get("phase") in ("Succeeded", "Failed") else None

    final = wait_for("the QueueJob finished", finished, timeout=1800, interval=2)
    ended = time.time()

    def rejoined() -> dict[str, Any] | None:
        try:
            now = [n for n in cluster_nodes(node, witness) if n["id"] == master["id"]]
        except (KubectlError, subprocess.TimeoutExpired):
            return None
        return (
            now[0] if now and "slave" in now[0]["flags"] and "fail" not in now[0]["flags"] else None
        )

    back = wait_for(
        "the deleted master back as a replica (same node id)", rejoined, timeout=300, interval=2
    )
    new_ip = pod_ips(node)[victim]

    # Every run the workers logged, from their logs (the Job's pods stay after it completes).
    job = final["jobName"]
    workers = node.kubectl_json(
        "get", "pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={job}"
    )
    done: Counter[str] = Counter()
    attempts: dict[str, int] = {}
    stamps: list[float] = []
    dropped = 0
    given_up: set[str] = set()
    tails: list[str] = []
    for pod in workers["items"]:
        # A replacement pod that has not started (yet) has no log, and did no work.
        read = node.kubectl("logs", "--timestamps", "-n", ns, pod["metadata"]["name"],
                            timeout=300, check=False)  # fmt: skip
        logs = read.stdout if read.returncode == 0 else ""
        phase = pod["status"].get("phase")
        tails.append(f"{pod['metadata']['name']} ({phase}): " + " | ".join(logs.splitlines()[-4:]))
        for line in logs.splitlines():
            match = DONE.match(line)
            if match:
                done[match[2]] += 1
                attempts[match[2]] = max(attempts.get(match[2], 0), int(match[3]))
                stamps.append(stamp(match[1]))
            elif DROPPED.search(line):
                dropped += 1
            elif found := GIVEN_UP.search(line):
                given_up.add(found[1])
    stamps.sort()
    # The drain's pause: the longest gap between two completions after the deletion.
    after = [t for t in stamps if t >= deleted - 1]
    gaps = [(b - a, b) for a, b in itertools.pairwise(after)]
    pause, resumed = max(gaps) if gaps else (0.0, deleted)
    counts = final["counts"]
    twice = sum(1 for n in done.values() if n > 1)
    released = sum(1 for a in attempts.values() if a > 1)
    # Items no worker logged as done: only those whose result a worker gave up (the failover
    # outlasted the lease while the completion's reply was lost) may be among them; Redis' own
    # counts below say whether each was completed.
    unlogged = ITEMS - len(done)
    lost = unlogged - len(given_up - set(done))
    print(
        f"\nredis cluster failover (WAIT {wait_replicas}, {ITEMS} items, 4 workers): master pod "
        f"{victim} deleted at {at_deletion} done; replica {witness} promoted "
        f"and cluster_state ok after {promoted_at - deleted:.1f}s; drain paused {pause:.1f}s, "
        f"first completion again {resumed - deleted:.1f}s after the deletion; drain "
        f"{ended - started:.0f}s ({ITEMS / (ended - started):.0f} items/s incl. the failover); "
        f"counts {counts}; lost {lost}; completed twice {twice}; leased again (attempt > 1) "
        f"{released}; results dropped as stale {dropped}; results given up {len(given_up)} "
        f"(completed, reply lost: {len(given_up - set(done))}); old master back as replica with IP "
        f"{back['ip']} (pod IP {new_ip}, before {master['ip']})"
    )
    failed_pods = [t for t in tails if "(Failed)" in t]
    if final["phase"] != "Succeeded" or failed_pods:
        failed = [c for c in final.get("conditions", []) if c.get("type") == "Failed"]
        print(f"QueueJob {final['phase']}: {failed}\nworkers' last lines:\n" + "\n".join(tails))
    assert final["phase"] == "Succeeded", final
    # The failover happened mid-drain: items were still to do when the master went.
    assert at_deletion < ITEMS, f"the drain was over ({at_deletion} done) before the deletion"
    assert stamps[-1] > deleted, "no completion after the deletion"
    assert counts["total"] == counts["succeeded"] == ITEMS, counts  # nothing lost, none twice
    assert counts["failed"] == 0, counts
    assert lost == 0, f"{lost} items without a completion or a given-up result in the workers' logs"
    assert back["ip"] == new_ip, (back, new_ip)  # the others learned its (new) address
    if wait_replicas:
        # Every completion a worker got back survived the failover: no item completed twice.
        assert twice == 0, [item for item, n in done.items() if n > 1][:20]
