"""Several real nodes (``--nodes=N``) against the one host-network real node: start, memory, pods.

``.venv/bin/python benchmarks/bench_multinode.py [--nodes 3] [--pods 5]`` (root) starts the
one host-network real node (``LocalCluster(node="kubelet")``, the baseline) and measures its
start (control plane + node Ready + CoreDNS), its node processes' resident memory (VmRSS from
/proc) and the pod start latency (create -> Running, one pod at a time, a static busybox image);
then the same on N real nodes in network namespaces (``LocalCluster(nodes=N)``), the pod start
latency per node (pods pinned with ``nodeName``). Prints each figure and the ratios N nodes /
one node. A measurement on a shared machine: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_podstart import BUSYBOX_IMAGE, NAMESPACE, busybox_archive, kubectl
from localkube import realnode
from localkube.cluster import LocalCluster
from localkube.process import rss_bytes

MIB = 2**20


def pinned_pod(name: str, node: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sleep", "120"]}],
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def pod_latencies(cluster: LocalCluster, count: int, node: str | None, prefix: str) -> list[float]:
    seconds = []
    for i in range(count):
        name = f"{prefix}-{i}"
        began = time.monotonic()
        kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(pinned_pod(name, node)))
        while True:
            obj = json.loads(kubectl(cluster, "get", "pod", name, "-n", NAMESPACE, "-o", "json"))
            phase = obj["status"].get("phase")
            if phase == "Running":
                break
            if phase in ("Failed", "Succeeded") or time.monotonic() > began + 120:
                raise RuntimeError(f"pod {name}: phase {phase}")
            time.sleep(0.05)
        seconds.append(time.monotonic() - began)
        kubectl(cluster, "delete", "pod", name, "-n", NAMESPACE, "--wait=false")
    return seconds


def measure(cluster: LocalCluster, label: str, pods: int) -> tuple[float, float, float]:
    """Print start, memory and pod latency; return (start s, node MiB, median pod latency s)."""
    assert cluster.startup_seconds is not None
    control = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    memory = {name: rss_bytes(pid) / MIB for name, pid in cluster.pids().items()}
    node_total = sum(v for k, v in memory.items() if k not in control)
    plane_total = sum(v for k, v in memory.items() if k in control)
    print(f"{label}: up in {cluster.startup_seconds:.1f}s", flush=True)
    for name, mib in memory.items():
        print(f"  {name:<28} {mib:7.1f} MiB")
    print(f"  node processes {node_total:.0f} MiB, control plane {plane_total:.0f} MiB", flush=True)
    kubectl(cluster, "create", "namespace", NAMESPACE)
    kubectl(cluster, "wait", "--for=create", "serviceaccount/default", "-n", NAMESPACE)
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "busybox.tar"
        busybox_archive(archive)
        cluster.import_image(archive)
    targets: list[str | None] = [n.name for n in cluster.nodes] or [None]
    medians = []
    for node in targets:
        values = pod_latencies(cluster, pods, node, f"p{len(medians)}")
        medians.append(statistics.median(values))
        rounded = [round(v, 2) for v in values]
        print(f"  pod start on {node or 'the node':<14} median {medians[-1]:5.2f}s  {rounded}")
    return cluster.startup_seconds, node_total, statistics.median(medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="nodes of the multi-node cluster")
    parser.add_argument("--pods", type=int, default=5, help="pods per node (default 5)")
    args = parser.parse_args()
    reason = realnode.unavailable_reason()
    if reason:
        raise SystemExit(f"bench_multinode: {reason}")
    with LocalCluster(node="kubelet") as one:
        base = measure(one, "one host-network real node", args.pods)
    with LocalCluster(node="kubelet", nodes=args.nodes) as many:
        multi = measure(many, f"{args.nodes} real nodes in network namespaces", args.pods)
    print(
        f"ratios {args.nodes} nodes / one node: start {multi[0] / base[0]:.2f}x, node memory "
        f"{multi[1] / base[1]:.2f}x, median pod start {multi[2] / base[2]:.2f}x"
    )


if __name__ == "__main__":
    main()
