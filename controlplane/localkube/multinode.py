"""Several real nodes on one machine (``localkube up --nodes=N``), each in a network namespace.

Node ``i`` (named ``localkube-n<i>``) is a containerd + kubelet + kube-proxy like the
host-network real node of :mod:`localkube.realnode`, but:

- its three processes run inside its own network namespace (``nsenter --net``, see
  :mod:`localkube.nodenet`), with the node IP, pod range and routes of
  :class:`localkube.netplan.NetPlan`; mounts, /sys and the cgroup hierarchies stay the host's;
- its containerd has its own root, state, socket and CNI configuration under
  ``<state>/nodes/localkube-n<i>/containerd``;
- its kubelet has its own root dir, pod log dir and cgroup tree (``cgroupRoot``
  ``/localkube<S>-n<i>``, created here in every cgroup v1 hierarchy before the kubelet starts);
- its Node object is created by localkube before the kubelet registers, with the node's fixed
  ``spec.podCIDR`` (node-ipam is off; the host's routes to each node's pods are fixed) and the
  labels :data:`INDEX_LABEL` = ``<i>`` and :data:`NAME_LABEL`.

Guarantees: :meth:`NetnsNode.stop` removes the node's pods through the CRI, stops its processes,
kills whatever is left in its cgroup tree and removes that tree, and detaches its mounts; the
network namespaces themselves go with :func:`localkube.nodenet.teardown`.
:meth:`NetnsNode.freeze` / :meth:`NetnsNode.thaw` SIGSTOP / SIGCONT chosen processes of a node
(its containers keep running: they are children of containerd's shims, not of containerd).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

from localkube import containerd, kubelet, nodenet
from localkube.containerd import ContainerdLayout
from localkube.netplan import NetPlan
from localkube.process import Component
from localkube.realnode import (
    CGROUP_ROOT,
    NodeFiles,
    _cri_reset,
    kill_cgroup_processes,
    remove_cgroups,
    remove_log_links,
    unmount_under,
)

NODE_PREFIX = "localkube-n"
INDEX_LABEL = "localkube.dev/node-index"
NAME_LABEL = "localkube.dev/node"
KUBELET_PORT = 10250
KUBE_PROXY_HEALTHZ_PORT = 10256
KUBE_PROXY_METRICS_PORT = 10249
#: What :meth:`NetnsNode.freeze` stops by default: the node's agent and runtime, not kube-proxy
#: (whose rules are already in the kernel) nor the containers.
FREEZE_DEFAULT = ("kubelet", "containerd")

Launch = Callable[[str, list[str]], Component]


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index}"


def _cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (and the v2 root on a pure v2 host)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink())


def make_cgroup_root(name: str) -> None:
    """Create ``/<name>`` in every hierarchy (cpuset's gets its parent's CPUs and memory nodes:
    a new v1 cpuset cgroup starts empty, and nothing could run in it)."""
    for hierarchy in _cgroup_hierarchies():
        directory = hierarchy / name
        directory.mkdir(exist_ok=True)
        for key in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / key).exists():
                (directory / key).write_text((hierarchy / key).read_text())


class NetnsNode:
    """One node of a multi-node cluster; see the module doc."""

    def __init__(self, plan: NetPlan, index: int, cluster_state: Path, binary: Path) -> None:
        self.plan = plan
        self.index = index
        self.name = node_name(index)
        self.netns = plan.netns(index)
        self.veth = plan.veth(index)
        self.ip = plan.node_ip(index)
        self.pod_cidr = plan.pod_cidr(index)
        self.cgroup_root = plan.cgroup_root(index)
        self.state_dir = cluster_state / "nodes" / self.name
        self.binary = binary
        self.layout = ContainerdLayout(self.state_dir / "containerd")
        self.components: dict[str, Component] = {}

    # ------------------------------------------------------------------------------- facts
    def node_object(self) -> dict[str, object]:
        """The Node localkube creates before the kubelet registers (fixed podCIDR, labels)."""
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    INDEX_LABEL: str(self.index),
                    NAME_LABEL: self.name,
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                },
            },
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
        }

    def pids(self) -> dict[str, int]:
        """The node's processes that are running: containerd, kubelet, kube-proxy -> pid."""
        return {
            name: c.pid
            for name, c in self.components.items()
            if c.process is not None and c.exit_code() is None
        }

    # ------------------------------------------------------------------------------- start
    def start_runtime(self, launch: Launch) -> Component:
        """containerd inside the node's namespace (wait for :meth:`runtime_ready` after)."""
        containerd.write_config(self.layout)
        runtime = launch(f"{self.name}-containerd", self._in_netns(containerd.argv(self.layout)))
        self.components["containerd"] = runtime
        return runtime

    def runtime_ready(self) -> bool:
        return containerd.ready(self.layout)

    def import_image(self, archive: Path) -> None:
        containerd.import_image(self.layout, archive)

    def start_agents(self, files: NodeFiles, kubeconfig: Path, launch: Launch) -> None:
        """kubelet and kube-proxy inside the node's namespace; ``kubeconfig`` is the kubelet's
        own (``system:node:<name>``)."""
        make_cgroup_root(self.cgroup_root.strip("/"))
        config = kubelet.write_json(
            self.state_dir / "kubelet" / "config.json",
            kubelet.kubelet_config(
                port=KUBELET_PORT,
                ca_cert=files.ca_cert,
                serving=(files.serving_cert, files.serving_key),
                runtime_endpoint=self.layout.endpoint,
                pod_logs_dir=self.state_dir / "pod-logs",
                cluster_dns=[self.plan.dns_ip],
                address=self.ip,
                cgroup_root=self.cgroup_root,
            ),
        )
        self.components["kubelet"] = launch(
            f"{self.name}-kubelet",
            self._in_netns(
                kubelet.kubelet_argv(
                    self.binary,
                    config=config,
                    kubeconfig=kubeconfig,
                    root_dir=self.state_dir / "kubelet" / "root",
                    node_name=self.name,
                    node_ip=self.ip,
                )
            ),
        )
        proxy_config = kubelet.write_json(
            self.state_dir / "kube-proxy" / "config.json",
            kubelet.kube_proxy_config(
                kubeconfig=files.kube_proxy_kubeconfig,
                node_name=self.name,
                healthz_port=KUBE_PROXY_HEALTHZ_PORT,
                metrics_port=KUBE_PROXY_METRICS_PORT,
                node_ip=self.ip,
                cluster_cidr=self.plan.cluster_cidr,
                healthz_address=self.ip,
            ),
        )
        self.components["kube-proxy"] = launch(
            f"{self.name}-kube-proxy",
            self._in_netns(kubelet.kube_proxy_argv(self.binary, config=proxy_config)),
        )

    def kube_proxy_healthy(self) -> bool:
        """kube-proxy's /healthz (on the node IP, reached over the bridge) answers 200."""
        conn = http.client.HTTPConnection(self.ip, KUBE_PROXY_HEALTHZ_PORT, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def _in_netns(self, argv: list[str]) -> list[str]:
        return nodenet.in_netns(self.netns, argv)

    # ------------------------------------------------------------------------------- faults
    def freeze(self, components: Iterable[str] = FREEZE_DEFAULT) -> None:
        """SIGSTOP the named processes of this node (see the module doc)."""
        for name in components:
            os.kill(self.components[name].pid, signal.SIGSTOP)

    def thaw(self, components: Iterable[str] = ("kubelet", "containerd", "kube-proxy")) -> None:
        """SIGCONT the named processes (harmless for those not stopped)."""
        for name in components:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.components[name].pid, signal.SIGCONT)

    def cut(self) -> None:
        """Cut the node off the bridge (see :func:`localkube.nodenet.cut`)."""
        nodenet.cut(self.plan, self.index)

    def heal(self) -> None:
        nodenet.heal(self.plan, self.index)

    # ------------------------------------------------------------------------------- stop
    def stop(self, grace: float) -> list[str]:
        """Tear the node down (see the module doc); returns what could not be cleaned."""
        problems: list[str] = []
        self.thaw()
        if "kubelet" in self.components:
            self.components["kubelet"].stop(grace)
        runtime = self.components.get("containerd")
        if runtime is not None and runtime.exit_code() is None:
            problems += _cri_reset(self.binary, self.layout)
        for name in ("kube-proxy", "containerd"):
            if name in self.components:
                self.components[name].stop(grace)
        problems += cleanup_node(self.state_dir, self.cgroup_root)
        return problems


def cleanup_node(node_state: Path, cgroup_root: str) -> list[str]:
    """What a node's processes may leave once they are gone: container processes in its cgroup
    tree, the tree itself, mounts under its state dir, its ``/var/log/containers`` links."""
    problems: list[str] = []
    top = cgroup_root.strip("/")
    killed = kill_cgroup_processes(top)
    if killed:
        problems.append(f"killed {killed} leftover container process(es) of {node_state.name}")
    problems += unmount_under(node_state)
    problems += remove_cgroups(top)
    remove_log_links(node_state)
    return problems
