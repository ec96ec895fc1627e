"""How long does a lost node keep a QueueJob short of workers? (a measurement, it asserts nothing)

``.venv/bin/python benchmarks/bench_nodeloss.py`` (``make bench-nodeloss``) starts a local
control plane, a password-protected ``redis-server`` and, in turn, the operator with lost-node
handling off (``QUEUEJOB_NODE_LOST_SECONDS=0``: the worker pods keep Kubernetes' 300 s
tolerations, nothing lets go of their pods: the behaviour before) and on (the default, 20 s),
in the same run. For each it runs three scenarios, each on a fresh second node that holds both
workers of a QueueJob (2 workers, items of 1 s):

- **drain**: ``kubectl drain`` the node;
- **lost, Node kept**: the node freezes (its kubelet and its worker processes get SIGSTOP) and
  goes NotReady;
- **lost, Node deleted**: the same, and the Node object is deleted at once (a reclaimed VM).

It prints, per scenario, the seconds from the event (the drain command; the NotReady
transition) until both worker slots run again on the healthy node, or "not within N s".

Backend ``--backend=agent`` (the default; no root): the nodes are node agents. The node-agent
cluster runs no node-lifecycle controller, so the bench does its part at the freeze: the Node's
Ready condition goes ``Unknown`` and the ``node.kubernetes.io/unreachable`` taints are set.
Kubernetes' own 40-50 s until NotReady is therefore not part of the figures; they start at
NotReady, as the goal does (full parallelism back within 60 s of NotReady).

Backend ``--backend=multinode`` (root; hold ``/tmp/queuejob-realnode.lock`` and build the images
first: ``make image redis-image``): three real nodes (``LocalCluster(node="kubelet",
nodes=3)``), the operator and Redis deployed as ``make deploy-local`` does, the setting changed
with ``kubectl set env`` on the Deployment. The victim is a node without Redis and without the
leader; CoreDNS is moved off it first. A QueueJob of 4 workers (2 on the victim, 2 elsewhere);
"lost" cuts the victim's network (``NetnsNode.cut``), the real node-lifecycle controller marks
it NotReady, and the time is measured from that transition (for "Node deleted", from the
deletion, made right after NotReady).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from localkube import paths
from localkube.cluster import LocalCluster
from localkube.redis_server import RedisServer
from queuejob import naming
from queuejob_demo.stack import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
NAME = "lost"
WORKERS = 2
#: Give up on a slot after this long (the "before" partition never refills on its own).
CAP = 150.0
SCENARIOS = ("drain", "lost, Node kept", "lost, Node deleted")


def kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None) -> str:
    argv = [str(paths.kubectl_binary()), f"--kubeconfig={cluster.kubeconfig}", *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()}")
    return done.stdout


def worker_pods(cluster: LocalCluster, namespace: str) -> list[dict[str, Any]]:
    out = kubectl(
        cluster,
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        f"{naming.QUEUEJOB_LABEL}={NAME}",
        "-o",
        "json",
    )
    return list(json.loads(out)["items"])


def running_on(pods: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
        and p["spec"].get("nodeName") == node
    ]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except RuntimeError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


@contextlib.contextmanager
def agent_node(cluster: LocalCluster, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A node agent registered as Node ``name``; stopped (and the Node deleted) afterwards."""
    state = Path(tempfile.mkdtemp(prefix="bench-nodeloss-"))
    log = (state / "agent.log").open("wb")
    argv = [sys.executable, "-m", "localkube.node_agent", "--kubeconfig", str(cluster.kubeconfig)]
    agent = subprocess.Popen(
        [*argv, "--node-name", name, "--state-dir", str(state)], stdout=log, stderr=log
    )
    try:
        wait_until(
            lambda: '"Ready"' in kubectl(cluster, "get", "node", name, "-o", "json"),
            60,
            f"node {name} registered",
        )
        yield agent
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(agent.pid, signal.SIGCONT)
        agent.terminate()
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
        log.close()
        with contextlib.suppress(RuntimeError):
            kubectl(cluster, "delete", "node", name, "--ignore-not-found", "--wait=false")


def mark_unreachable(cluster: LocalCluster, node: str) -> None:
    """What the node-lifecycle controller does once a kubelet stopped posting status."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }
    kubectl(
        cluster,
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": [ready]}}),
    )
    kubectl(
        cluster,
        "taint",
        "node",
        node,
        "node.kubernetes.io/unreachable:NoSchedule",
        "node.kubernetes.io/unreachable:NoExecute",
        "--overwrite",
    )


def container_pid(pod: dict[str, Any]) -> int:
    [status] = pod["status"]["containerStatuses"]
    return int(status["containerID"].partition("://")[2])


def run_scenario(cluster: LocalCluster, scenario: str, number: int) -> float | None:
    """One scenario on a fresh second node; the seconds until both slots run again, or None."""
    home = cluster.node_name
    node = f"{home}-b{number}"
    namespace = f"bench-nodeloss-{number}"
    kubectl(cluster, "create", "namespace", namespace)
    try:
        with agent_node(cluster, node) as agent:
            kubectl(cluster, "cordon", home)
            try:
                manifest = {
                    "apiVersion": "workqueue.example.com/v1alpha1",
                    "kind": "QueueJob",
                    "metadata": {"name": NAME, "namespace": namespace},
                    "spec": {
                        "items": [f"i-{n}" for n in range(5000)],
                        "parallelism": WORKERS,
                        "leaseSeconds": 10,
                        "worker": {"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "1"}]},
                    },
                }
                kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(manifest))
                old = wait_until(
                    lambda: (
                        p
                        if len(p := running_on(worker_pods(cluster, namespace), node)) == WORKERS
                        else None
                    ),
                    120,
                    f"{WORKERS} workers on {node}",
                )
            finally:
                kubectl(cluster, "uncordon", home)
            old_names = {p["metadata"]["name"] for p in old}
            time.sleep(2)
            if scenario == "drain":
                started = time.monotonic()
                subprocess.Popen(
                    [
                        str(paths.kubectl_binary()),
                        f"--kubeconfig={cluster.kubeconfig}",
                        "drain",
                        node,
                        "--ignore-daemonsets",
                        "--delete-emptydir-data",
                        "--timeout=120s",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            else:
                os.kill(agent.pid, signal.SIGSTOP)
                for pod in old:
                    os.kill(container_pid(pod), signal.SIGSTOP)
                mark_unreachable(cluster, node)
                started = time.monotonic()
                if scenario == "lost, Node deleted":
                    kubectl(cluster, "delete", "node", node, "--wait=false")

            def refilled() -> bool:
                pods = running_on(worker_pods(cluster, namespace), home)
                return len([p for p in pods if p["metadata"]["name"] not in old_names]) == WORKERS

            try:
                wait_until(refilled, CAP, "both slots refilled")
                took: float | None = time.monotonic() - started
            except TimeoutError:
                took = None
            if scenario != "drain":
                for pod in old:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(container_pid(pod), signal.SIGKILL)
            return took
    finally:
        with contextlib.suppress(RuntimeError):
            kubectl(cluster, "delete", "namespace", namespace, "--wait=false")


def _json(cluster: LocalCluster, *args: str) -> Any:
    return json.loads(kubectl(cluster, *args, "-o", "json"))


def _ready_condition(cluster: LocalCluster, name: str) -> str | None:
    try:
        node = _json(cluster, "get", "node", name)
    except RuntimeError:
        return None
    for c in node["status"].get("conditions") or []:
        if c["type"] == "Ready":
            return str(c["status"])
    return None


def _running_pods(cluster: LocalCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = _json(cluster, "get", "pods", "-n", namespace, "-l", selector)["items"]
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def _multinode_victim(cluster: LocalCluster, names: list[str]) -> str:
    system = "queuejob-system"

    def leader_node() -> str | None:
        # After a rollout the Lease may still name an old pod: wait for a running leader, so
        # the victim is never the leader's node (that would measure a failover instead).
        lease = _json(cluster, "get", "lease", "queuejob-operator", "-n", system)
        leader = str(lease["spec"].get("holderIdentity") or "").rpartition("_")[0]
        operators = _running_pods(cluster, system, "app.kubernetes.io/name=queuejob-operator")
        return next(
            (p["spec"]["nodeName"] for p in operators if p["metadata"]["name"] == leader), None
        )

    leader_node = wait_until(leader_node, 120, "a running operator holding the Lease")
    [redis] = _running_pods(cluster, system, "app.kubernetes.io/name=redis")
    victim = next(n for n in names if n not in (leader_node, redis["spec"]["nodeName"]))
    print(f"victim {victim} (leader on {leader_node}, Redis on {redis['spec']['nodeName']})")
    dns = [
        p["metadata"]["name"]
        for p in _running_pods(cluster, "kube-system", "k8s-app=kube-dns")
        if p["spec"]["nodeName"] == victim
    ]
    if dns:
        kubectl(cluster, "cordon", victim)
        try:
            kubectl(cluster, "delete", "pod", "-n", "kube-system", *dns)
            wait_until(
                lambda: _running_pods(cluster, "kube-system", "k8s-app=kube-dns"), 120, "CoreDNS"
            )
        finally:
            kubectl(cluster, "uncordon", victim)
    return victim


def run_multinode_scenario(cluster: LocalCluster, scenario: str, number: int) -> float | None:
    """One scenario on the three real nodes; seconds until the victim's 2 slots run again."""
    names = [n.name for n in cluster.nodes]
    victim = _multinode_victim(cluster, names)
    node = next(n for n in cluster.nodes if n.name == victim)
    namespace = f"bench-nodeloss-{number}"
    kubectl(cluster, "create", "namespace", namespace)
    selector = f"{naming.QUEUEJOB_LABEL}={NAME}"
    others = [n for n in names if n != victim]
    try:
        for n in others:
            kubectl(cluster, "cordon", n)
        try:
            manifest = {
                "apiVersion": "workqueue.example.com/v1alpha1",
                "kind": "QueueJob",
                "metadata": {"name": NAME, "namespace": namespace},
                "spec": {
                    "items": [f"i-{n}" for n in range(5000)],
                    "parallelism": 2,
                    "leaseSeconds": 10,
                    "worker": {"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "1"}]},
                },
            }
            kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(manifest))
            wait_until(
                lambda: len(_running_pods(cluster, namespace, selector)) == 2, 180, "2 workers"
            )
        finally:
            for n in others:
                kubectl(cluster, "uncordon", n)
        kubectl(cluster, "cordon", victim)
        try:
            kubectl(
                cluster, "patch", "queuejob", NAME, "-n", namespace, "--type=merge",
                "-p", json.dumps({"spec": {"parallelism": 4}}),
            )  # fmt: skip
            wait_until(
                lambda: len(_running_pods(cluster, namespace, selector)) == 4, 180, "4 workers"
            )
        finally:
            kubectl(cluster, "uncordon", victim)
        old = {
            p["metadata"]["name"]
            for p in _running_pods(cluster, namespace, selector)
            if p["spec"]["nodeName"] == victim
        }
        if scenario == "drain":
            started = time.monotonic()
            subprocess.Popen(
                [str(paths.kubectl_binary()), f"--kubeconfig={cluster.kubeconfig}", "drain",
                 victim, "--ignore-daemonsets", "--delete-emptydir-data", "--force",
                 "--timeout=240s"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        else:
            node.cut()
            wait_until(lambda: _ready_condition(cluster, victim) != "True", 240, "NotReady")
            started = time.monotonic()
            if scenario == "lost, Node deleted":
                kubectl(cluster, "delete", "node", victim, "--wait=false")

        def refilled() -> bool:
            pods = _running_pods(cluster, namespace, selector)
            fresh = [p for p in pods if p["metadata"]["name"] not in old]
            return len(fresh) == 4 and all(p["spec"]["nodeName"] != victim for p in fresh)

        try:
            wait_until(refilled, CAP, "4 workers again")
            return time.monotonic() - started
        except TimeoutError:
            return None
    finally:
        node.heal()
        if _ready_condition(cluster, victim) is None:  # deleted: a new VM of the same name
            with contextlib.suppress(RuntimeError):
                kubectl(cluster, "create", "-f", "-", stdin=json.dumps(node.node_object()))
        # The QueueJob first: a namespace deleted under a running Job can leave its finished
        # pods Terminating (job-tracking finalizer), and the next drain would wait for them.
        with contextlib.suppress(RuntimeError, TimeoutError):
            kubectl(cluster, "delete", "queuejob", NAME, "-n", namespace, "--timeout=180s")
            wait_until(
                lambda: not _json(cluster, "get", "pods", "-n", namespace)["items"],
                240,
                "the QueueJob's pods gone",
            )
        with contextlib.suppress(RuntimeError):
            kubectl(cluster, "delete", "namespace", namespace, "--wait=false")
        wait_until(lambda: _ready_condition(cluster, victim) == "True", 240, f"{victim} Ready")
        kubectl(cluster, "uncordon", victim)


def multinode_main(lost_seconds: int) -> dict[tuple[str, int], float | None]:
    from localkube import deploy

    results: dict[tuple[str, int], float | None] = {}
    number = 0
    with LocalCluster(node="kubelet", nodes=3) as cluster:
        argv = [str(paths.kubectl_binary()), f"--kubeconfig={cluster.kubeconfig}"]
        deploy.deploy(argv, REPO / "manifests" / "deploy-local", cluster.import_image)
        for setting in (0, lost_seconds):
            kubectl(
                cluster, "set", "env", "deployment/queuejob-operator", "-n", "queuejob-system",
                f"QUEUEJOB_NODE_LOST_SECONDS={setting}",
            )  # fmt: skip
            kubectl(
                cluster, "rollout", "status", "deployment/queuejob-operator",
                "-n", "queuejob-system", "--timeout=300s",
            )  # fmt: skip
            time.sleep(20)  # the old pods gone, the Lease with a new leader
            for scenario in SCENARIOS:
                number += 1
                took = run_multinode_scenario(cluster, scenario, number)
                results[(scenario, setting)] = took
                shown = f"{took:.1f}s" if took is not None else f"not within {CAP:.0f}s"
                print(
                    f"QUEUEJOB_NODE_LOST_SECONDS={setting:>2} {scenario:<20} "
                    f"both slots working again after {shown}",
                    flush=True,
                )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("agent", "multinode"), default="agent")
    parser.add_argument("--lost-seconds", type=int, default=20, help="the 'after' setting")
    args = parser.parse_args()
    if args.backend == "multinode":
        results = multinode_main(args.lost_seconds)
        print_table(args.backend, args.lost_seconds, results)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="bench-nodeloss-"))
    results = {}
    number = 0
    with LocalCluster() as cluster, RedisServer() as server:
        kubectl(cluster, "apply", "-f", str(REPO / "crds"))
        kubectl(
            cluster, "wait", "--for=condition=Established", "crd/queuejobs.workqueue.example.com"
        )
        for setting in (0, args.lost_seconds):
            operator = OperatorProcess(
                cluster.kubeconfig,
                redis_url=f"redis://127.0.0.1:{server.port}/0",
                redis_password=server.password,
                log_file=workdir / f"operator-{setting}.log",
                extra_env={
                    "QUEUEJOB_WORKER_IMAGE": "queuejob:dev",
                    "QUEUEJOB_NODE_LOST_SECONDS": str(setting),
                },
                extra_args=("--standalone", "--all-namespaces"),
            )
            with operator:
                for scenario in SCENARIOS:
                    number += 1
                    took = run_scenario(cluster, scenario, number)
                    results[(scenario, setting)] = took
                    shown = f"{took:.1f}s" if took is not None else f"not within {CAP:.0f}s"
                    print(
                        f"QUEUEJOB_NODE_LOST_SECONDS={setting:>2} {scenario:<20} "
                        f"both slots working again after {shown}",
                        flush=True,
                    )
    print_table(args.backend, args.lost_seconds, results)
    return 0


def print_table(
    backend: str, lost_seconds: int, results: dict[tuple[str, int], float | None]
) -> None:
    print(f"\nbackend {backend}; seconds from the drain / NotReady / deletion to the slots back:")
    print(f"{'scenario':<20} {'before (off)':>14} {'after (' + str(lost_seconds) + ' s)':>14}")
    for scenario in SCENARIOS:
        row = [results.get((scenario, s)) for s in (0, lost_seconds)]
        cells = [f"{v:.1f}" if v is not None else f">{CAP:.0f}" for v in row]
        print(f"{scenario:<20} {cells[0]:>14} {cells[1]:>14}")


if __name__ == "__main__":
    sys.exit(main())
