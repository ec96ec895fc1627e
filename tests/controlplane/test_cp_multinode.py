"""Several real nodes, each in a network namespace of its own (``localkube up --nodes=N``).

Runs on the session's ``multi_node`` (``--nodes=N``, 3 unless given); needs root like every
real-node test (see ``fixtures.realnode``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.cluster import Cluster, wait_for
from fixtures.realnode import TEST_IMAGE, RealNodeCluster
from localkube import LocalCluster, hostnet, netplan
from localkube.multinode import INDEX_LABEL, KUBELET_PORT, NetnsNode

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(300)]


@pytest.fixture
def cluster3(multi_node: RealNodeCluster) -> Cluster:
    multi_node.local.check()
    if len(multi_node.cluster.nodes) < 2:
        pytest.fail("these tests need --nodes=2 or more")
    return multi_node.cluster


@pytest.fixture
def ns(cluster3: Cluster) -> Iterator[str]:
    name = f"mn-{uuid.uuid4().hex[:8]}"
    cluster3.kubectl("create", "namespace", name)
    yield name
    cluster3.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod_on(node: str, name: str, script: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **meta},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]}],
        },
    }


def apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def finished(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj: dict[str, Any] = cluster.kubectl_json("get", "pod", name, "-n", namespace)
        return obj if obj["status"].get("phase") in ("Succeeded", "Failed") else None

    return wait_for(f"pod {namespace}/{name} finished", probe, timeout=150)


def netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def test_cp_multinode_nodes_are_apart(cluster3: Cluster) -> None:
    """Each node: Ready, its own IP, podCIDR, label, network namespace and cgroup tree."""
    objs = {n["metadata"]["name"]: n for n in cluster3.kubectl_json("get", "nodes")["items"]}
    nodes: list[NetnsNode] = cluster3.nodes
    assert sorted(objs) == sorted(n.name for n in nodes)
    host_net = netns_inode("/proc/self/ns/net")
    seen_ips, seen_cidrs = set(), set()
    for node in nodes:
        obj = objs[node.name]
        ready = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True", ready
        assert obj["metadata"]["labels"][INDEX_LABEL] == str(node.index)
        assert obj["spec"]["podCIDR"] == node.pod_cidr
        addresses = {a["type"]: a["address"] for a in obj["status"]["addresses"]}
        assert addresses["InternalIP"] == node.ip
        seen_ips.add(node.ip)
        seen_cidrs.add(node.pod_cidr)
        own = netns_inode(f"/run/netns/{node.netns}")
        assert own != host_net
        pids = node.pids()
        assert sorted(pids) == ["containerd", "kube-proxy", "kubelet"]
        for pid in pids.values():
            assert netns_inode(f"/proc/{pid}/ns/net") == own
        config = json.loads((node.state_dir / "kubelet" / "config.json").read_text())
        assert config["cgroupRoot"] == node.cgroup_root
    assert len(seen_ips) == len(seen_cidrs) == len(nodes)


def test_cp_multinode_pods_talk_across_nodes_by_ip_service_and_dns(
    cluster3: Cluster, ns: str
) -> None:
    first, second = cluster3.nodes[0], cluster3.nodes[-1]
    server = pod_on(
        first.name,
        "server",
        "while true; do echo hello-from-$(hostname) | nc -l -p 8080; done",
        labels={"app": "echo"},
    )
    server["spec"]["restartPolicy"] = "Always"
    apply(cluster3, ns, server)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(cluster3, ns, service)

    def server_ip() -> str | None:
        obj = cluster3.kubectl_json("get", "pod", "server", "-n", ns)
        ready = obj["status"].get("phase") == "Running"
        return str(obj["status"].get("podIP")) if ready else None

    ip = wait_for("the server pod Running", server_ip, timeout=120)
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(first.pod_cidr)
    script = (
        f"for i in 1 2 3 4 5 6 7 8 9 10; do nc -w 3 {ip} 8080 && break; sleep 1; done; "
        f"for i in 1 2 3 4 5 6 7 8 9 10; do nc -w 3 echo.{ns}.svc.cluster.local 80 && break; "
        "sleep 1; done; kubectl get --raw /version | grep gitVersion"
    )
    apply(cluster3, ns, pod_on(second.name, "client", script))
    obj = finished(cluster3, ns, "client")
    logs = cluster3.kubectl("logs", "-n", ns, "client").stdout
    assert obj["status"]["phase"] == "Succeeded", logs
    assert obj["spec"]["nodeName"] == second.name
    assert logs.count("hello-from-server") == 2, logs  # by pod IP, then by Service DNS name
    assert '"gitVersion": "v1.35.4"' in logs  # the API server through the kubernetes Service


def _lease_renewed(cluster: Cluster, node: str) -> str:
    lease = cluster.kubectl_json("get", "lease", node, "-n", "kube-node-lease")
    return str(lease["spec"]["renewTime"])


def test_cp_multinode_freeze_stops_a_kubelet_and_thaw_resumes_it(cluster3: Cluster) -> None:
    node = cluster3.nodes[-1]
    node.freeze()
    try:
        for name in ("kubelet", "containerd"):
            # SIGSTOP is delivered asynchronously: wait for the state, not a first read.
            stat = Path(f"/proc/{node.pids()[name]}/stat")
            wait_for(
                f"{name} stopped",
                lambda stat=stat: stat.read_text().rsplit(")", 1)[1].split()[0] == "T",
                timeout=10,
                interval=0.2,
            )
        # A renewal the kubelet sent just before the stop may still land: let it, then read.
        time.sleep(3)
        before = _lease_renewed(cluster3, node.name)
        # The kubelet renews its node Lease every 10 s; frozen, it cannot.
        with pytest.raises(AssertionError):
            wait_for(
                "a renewal",
                lambda: _lease_renewed(cluster3, node.name) != before,
                timeout=25,
                interval=1,
            )
    finally:
        node.thaw()
    wait_for("a renewal after thaw", lambda: _lease_renewed(cluster3, node.name) != before)


def _kubelet_reachable(node: NetnsNode) -> bool:
    try:
        with socket.create_connection((node.ip, KUBELET_PORT), timeout=2):
            return True
    except OSError:
        return False


def test_cp_multinode_cut_takes_a_node_off_the_network_and_heal_restores_it(
    cluster3: Cluster,
) -> None:
    node = cluster3.nodes[-1]
    assert _kubelet_reachable(node)
    node.cut()
    try:
        assert not _kubelet_reachable(node)
        assert node.pids().keys() == {"containerd", "kubelet", "kube-proxy"}  # still running
    finally:
        node.heal()
    wait_for("the kubelet reachable again", lambda: _kubelet_reachable(node), timeout=30)


def test_cp_multinode_pods_cannot_leave_the_run_range(cluster3: Cluster, ns: str) -> None:
    """The egress guard drops a pod's packets to an address outside the run's range. The probe
    address is routed onto the run's own bridge, so even without the guard nothing leaves."""
    multi = cluster3.local
    assert multi is not None and multi.plan is not None
    plan = multi.plan
    probe = "192.0.2.77"  # TEST-NET-1, kept on this machine by the route below
    hostnet.run("ip", "route", "add", f"{probe}/32", "dev", plan.bridge)
    try:
        before = _drops(plan)
        node = cluster3.nodes[0]
        apply(cluster3, ns, pod_on(node.name, "out", f"nc -w 2 {probe} 80; echo rc=$?"))
        finished(cluster3, ns, "out")
        assert "rc=0" not in cluster3.kubectl("logs", "-n", ns, "out").stdout
        assert _drops(plan) > before
    finally:
        hostnet.run("ip", "route", "del", f"{probe}/32", "dev", plan.bridge, check=False)


def _drops(plan: netplan.NetPlan) -> int:
    listing = hostnet.run(
        "iptables", "-w", "-t", "mangle", "-L", plan.egress_chain, "-v", "-x", "-n"
    ).stdout
    rows = [line.split() for line in listing.splitlines()[2:] if "DROP" in line]
    return sum(int(row[0]) for row in rows)


def test_cp_multinode_second_run_side_by_side_gets_its_own_slot_and_cleans_up(
    multi_node: RealNodeCluster,
) -> None:
    first = multi_node.local
    assert first.plan is not None
    second = LocalCluster(node="kubelet", nodes=1)
    second.start()
    try:
        assert second.plan is not None and second.plan.slot != first.plan.slot
        plan, node = second.plan, second.nodes[0]
        assert node.name == "localkube-n1" and node.ip != first.nodes[0].ip
        assert netplan.holder(plan.slot) is not None
    finally:
        second.stop()
    assert not second.stop_problems
    assert not Path(f"/run/netns/{plan.netns(1)}").exists()
    assert not Path(f"/sys/class/net/{plan.bridge}").exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{plan.cgroup_root(1).strip('/')}"))
    assert netplan.holder(plan.slot) is None
    first.check()  # the session's cluster is untouched
    assert _kubelet_reachable(first.nodes[0])


def test_cp_multinode_operator_replicas_land_on_different_nodes(
    deployed_multi_node: RealNodeCluster,
) -> None:
    """manifests/deploy-local's 2 operator replicas honour their (preferred) anti-affinity."""
    cluster = deployed_multi_node.cluster

    def placed() -> list[str] | None:
        pods = cluster.kubectl_json(
            "get", "pods", "-n", "queuejob-system", "-l", "app.kubernetes.io/name=queuejob-operator"
        )["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        live = [p for p in running if not p["metadata"].get("deletionTimestamp")]
        return [p["spec"]["nodeName"] for p in live] if len(live) == 2 else None

    nodes = wait_for("2 operator replicas Running", placed, timeout=180)
    assert len(set(nodes)) == 2, nodes
