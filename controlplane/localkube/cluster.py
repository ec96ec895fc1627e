"""``LocalCluster``: a real Kubernetes control plane (plus the node agent) as local processes.

Dev/test tooling only. ``with LocalCluster() as c:`` generates a PKI, starts etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and the node agent on loopback, waits until
the API server is ready, the node is Ready and the controllers work, and writes an admin
kubeconfig (:attr:`LocalCluster.kubeconfig`). Guarantees:

- ``start()`` either returns a working cluster or raises (:class:`ComponentDied` names the
  component and quotes the end of its log) after stopping everything it started;
- while running, a monitor thread notices a component that exits, reports which one with the last
  lines of its log (``on_failure``, default: stderr) and :meth:`LocalCluster.check` raises;
- components die with the process that started them (``PR_SET_PDEATHSIG``): call ``start()``
  from a thread that outlives the cluster, normally the main thread;
- ``stop()`` SIGTERMs each component (node agent first, etcd last), SIGKILLs after a grace
  period, stops any leftover process of this cluster (pods included, found by their marker) and
  removes the state directory when it created it (a temporary one).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from localkube import (
    clusterdns,
    components,
    containerd,
    hostnet,
    netplan,
    nodenet,
    paths,
    realnode,
    storage,
)
from localkube.apiclient import ApiProbe
from localkube.certs import ClientIdentity, Pki, generate_pki
from localkube.kubeconfig import write_kubeconfig
from localkube.multinode import NetnsNode, cleanup_node, node_name
from localkube.netplan import NetPlan
from localkube.podlogs import pod_log_path
from localkube.process import MARKER_ENV, Component, free_port, rss_bytes, start_time, sweep
from localkube.realnode import NodeFiles, RealNode

DEFAULT_NODE = "localkube-node"
START_TIMEOUT = 120.0
#: What runs pods: the Python node agent (local processes, no root), a real kubelet with
#: containerd (:mod:`localkube.realnode`, root), or nothing.
NodeKind = Literal["agent", "kubelet", "none"]
NODE_KINDS: tuple[NodeKind, ...] = ("agent", "kubelet", "none")


TEMP_PREFIX = "localkube-"
OWNER_FILE = "owner"


def remove_abandoned_temp_dirs() -> list[Path]:
    """Remove temporary state dirs whose owning process is gone (e.g. a test run killed with
    SIGKILL: its components died with it, see ``PR_SET_PDEATHSIG``, but its directory stayed).
    Directories of live owners, and any without an owner record, are left alone."""
    removed = []
    for directory in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            pid, started = (directory / OWNER_FILE).read_text().split()
        except (OSError, ValueError):
            continue
        if start_time(int(pid)) != started:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


@dataclass(frozen=True)
class NodeAddresses:
    """Addresses of a cluster with real nodes, for tests that check them."""

    pod_cidr: str  # every pod's address is in it
    service_ip: str  # the ``kubernetes`` Service
    dns_ip: str  # the ``kube-dns`` Service
    egress_chain: str  # the mangle chain that drops pod traffic leaving the cluster's range
    local_link: str  # a host link of the cluster's own (a route into it stays on this machine)


class ComponentDied(RuntimeError):
    """A component exited; the message names it and quotes the end of its log."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LocalCluster:
    """A local control plane; see the module docstring for its guarantees."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        binary: Path | None = None,
        node_agent: bool = True,
        node: NodeKind | None = None,
        node_name: str = DEFAULT_NODE,
        progress: Callable[[str], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        nodes: int = 0,
    ) -> None:
        """``extra_args`` maps a component name (``etcd``, ``kube-apiserver``,
        ``kube-controller-manager``, ``kube-scheduler``, ``node-agent``) to flags appended to its
        command line, e.g. ``{"kube-apiserver": ["--audit-log-path=..."]}``. ``node`` picks
        what runs pods (:data:`NodeKind`); without it, ``node_agent`` chooses agent or none.
        ``nodes=N`` (N >= 1) runs N real nodes, each in a network namespace of its own
        (:mod:`localkube.multinode`), instead of the one host-network real node."""
        self._requested_dir = state_dir
        self._extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        self._binary = binary
        self.node: NodeKind = node or ("agent" if node_agent else "none")
        if nodes:
            if self.node not in ("kubelet", "none") and node is not None:
                raise ValueError(f"nodes={nodes} runs real nodes; it cannot go with node={node}")
            self.node = "kubelet"
        self.node_count = nodes
        self.plan: NetPlan | None = None
        self.nodes: list[NetnsNode] = []
        self.with_node_agent = self.node == "agent"
        self.real_node: RealNode | None = None
        self.stop_problems: list[str] = []
        self.node_name = node_name
        self._progress = progress or (lambda _msg: None)
        self._on_failure = on_failure or _stderr
        self.cluster_id = uuid.uuid4().hex
        self.components: list[Component] = []
        self.failures: list[str] = []
        self.startup_seconds: float | None = None
        self._state_dir: Path | None = None
        self._owns_dir = False
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._probe: ApiProbe | None = None
        self.port = 0

    # ----------------------------------------------------------------------------- accessors
    @property
    def state_dir(self) -> Path:
        assert self._state_dir is not None, "cluster not started"
        return self._state_dir

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (user ``localkube-admin``, group ``system:masters``)."""
        return self.state_dir / "kubeconfig"

    @property
    def host(self) -> str:
        """Where the API server listens: loopback, or the real node's address (pods reach it)."""
        if self.plan is not None:
            return self.plan.api_ip
        return hostnet.NODE_IP if self.node == "kubelet" else "127.0.0.1"

    @property
    def addresses(self) -> NodeAddresses:
        """The pod range, Service and DNS addresses and egress guard of the real node(s)."""
        if self.plan is not None:
            plan = self.plan
            return NodeAddresses(
                plan.cluster_cidr, plan.service_ip, plan.dns_ip, plan.egress_chain, plan.bridge
            )
        return NodeAddresses(
            hostnet.POD_CIDR,
            hostnet.SERVICE_IP,
            hostnet.DNS_IP,
            hostnet.EGRESS_CHAIN,
            hostnet.API_LINK,
        )

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def kubeconfig_files(self) -> Path:
        """Admin kubeconfig referencing the PEM files by path (valid while the cluster runs)."""
        return self.state_dir / "kubeconfigs" / "admin-files.kubeconfig"

    def pod_log(self, namespace: str, pod: str, container: str) -> Path:
        """Path of a container's log file written by the node agent."""
        return pod_log_path(self.state_dir, namespace, pod, container)

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.components if c.process is not None}

    def rss(self) -> dict[str, int]:
        """Resident memory (bytes) of each component process."""
        return {name: rss_bytes(pid) for name, pid in self.pids().items()}

    # ----------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bring the cluster up (see module docstring); raises and cleans up on failure."""
        began = time.monotonic()
        if self._requested_dir is None:
            remove_abandoned_temp_dirs()
            self._state_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            (self._state_dir / OWNER_FILE).write_text(f"{os.getpid()} {start_time(os.getpid())}")
            self._owns_dir = True
        else:
            self._state_dir = self._requested_dir.absolute()
            self._state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        self._progress(f"cluster ready in {self.startup_seconds:.1f}s: {self.server}")
        self._monitor = threading.Thread(target=self._watch, name="localkube-monitor", daemon=True)
        self._monitor.start()

    def _start(self, began: float) -> None:
        binary = self._binary or paths.require_binary()
        state = self.state_dir
        logs = state / "logs"
        real = self.node == "kubelet"
        multi = self.node_count > 0
        if multi:
            self._claim_slot(binary)
            assert self.plan is not None
            self.nodes = [
                NetnsNode(self.plan, index, state, binary)
                for index in range(1, self.node_count + 1)
            ]
        elif real:
            self.real_node = RealNode(
                state, binary, paths.pause_binary(), self.node_name, paths.coredns_binary()
            )
        pki = generate_pki(
            state / "pki",
            [
                ClientIdentity("admin", "localkube-admin", ("system:masters",)),
                ClientIdentity("controller-manager", "system:kube-controller-manager"),
                ClientIdentity("scheduler", "system:kube-scheduler"),
                ClientIdentity("node", f"system:node:{self.node_name}", ("system:nodes",)),
                ClientIdentity("apiserver-kubelet-client", "kube-apiserver-kubelet-client"),
                ClientIdentity("kube-proxy", "system:kube-proxy"),
                *(
                    ClientIdentity(f"node-{n.name}", f"system:node:{n.name}", ("system:nodes",))
                    for n in self.nodes
                ),
            ],
            service_ip=self._service_ip(),
            node_name=self.nodes[0].name if self.nodes else self.node_name,
            extra_ips=self._serving_ips(),
        )
        ports = components.Ports(free_port(), free_port(), free_port())
        self.port = ports.apiserver
        configs = {
            name: write_kubeconfig(
                state / "kubeconfigs" / f"{name}.kubeconfig",
                server=self.server,
                ca_cert=pki.ca.cert,
                client=pki.clients[name],
                user=user,
                embed=name == "admin",
            )
            for name, user in [
                ("admin", "localkube-admin"),
                ("controller-manager", "system:kube-controller-manager"),
                ("scheduler", "system:kube-scheduler"),
                ("node", f"system:node:{self.node_name}"),
                ("kube-proxy", "system:kube-proxy"),
                *((f"node-{n.name}", f"system:node:{n.name}") for n in self.nodes),
            ]
        }
        # The same admin identity with the PEM files referenced, not embedded: clients that copy
        # embedded credentials to temporary files (kubernetes, pykube-ng) then need none.
        write_kubeconfig(
            state / "kubeconfigs" / "admin-files.kubeconfig",
            server=self.server,
            ca_cert=pki.ca.cert,
            client=pki.clients["admin"],
            user="localkube-admin",
            embed=False,
        )
        self._probe = ApiProbe(ports.apiserver, pki.ca.cert, pki.clients["admin"], host=self.host)
        env = {**os.environ, MARKER_ENV: self.cluster_id}
        self._progress(f"certificates and kubeconfigs written ({time.monotonic() - began:.1f}s)")
        if self.real_node is not None:  # the API server binds the node address: set it up first
            self.real_node.setup_host(self._progress)
        if self.plan is not None:  # likewise: the API server binds the run's bridge address
            nodenet.snapshot_sysctls(state)
            nodenet.setup(self.plan, self.node_count)
            self._progress(
                f"network: bridge {self.plan.bridge} {self.plan.api_ip}, "
                f"{self.node_count} node namespace(s), range {self.plan.run_cidr}"
            )

        etcd = self._launch("etcd", components.etcd(binary, state / "etcd", ports), logs, env)
        self._wait("etcd health", [etcd], lambda: self._etcd_healthy(ports.etcd_client))
        apiserver = self._launch(
            "kube-apiserver",
            components.apiserver(
                binary,
                pki,
                ports,
                real_node=real,
                address=self.plan.api_ip if self.plan else None,
                service_cidr=self.plan.service_cidr if self.plan else None,
            ),
            logs,
            env,
        )
        self._wait("kube-apiserver /readyz", [etcd, apiserver], self._apiserver_ready)
        self._progress(f"API server ready ({time.monotonic() - began:.1f}s)")
        self._launch(
            "kube-controller-manager",
            components.controller_manager(
                binary,
                pki,
                configs["controller-manager"],
                real_node=real,
                multi_node=(self.plan.cluster_cidr, self.plan.service_cidr) if self.plan else None,
            ),
            logs,
            env,
        )
        self._launch(
            "kube-scheduler", components.scheduler(binary, configs["scheduler"]), logs, env
        )
        if self.with_node_agent:
            self._launch("node-agent", self.node_agent_argv(configs["node"], pki), logs, env)
            self._wait(f"node {self.node_name} Ready", self.components, self._node_ready)
        if self.real_node is not None:
            self._start_real_node(self.real_node, pki, configs, logs, env)
        if self.nodes:
            self._start_nodes(pki, configs, logs, env)
        self._wait(
            "serviceaccount default/default (controllers working)",
            self.components,
            lambda: (
                self._probe_json("/api/v1/namespaces/default/serviceaccounts/default") is not None
            ),
        )
        self._write_pki_note(pki)
        # Published last: the kubeconfig appears only once the cluster is usable.
        shutil.copy2(configs["admin"], state / "kubeconfig.tmp")
        (state / "kubeconfig.tmp").replace(self.kubeconfig)

    def _start_real_node(
        self,
        node: RealNode,
        pki: Pki,
        configs: dict[str, Path],
        logs: Path,
        env: dict[str, str],
    ) -> None:
        """containerd, kubelet, kube-proxy; wait until the node is Ready and Services work."""
        assert pki.node_serving is not None
        self._bind_kubelet_api_admin()
        files = NodeFiles(
            ca_cert=pki.ca.cert,
            serving_cert=pki.node_serving.cert,
            serving_key=pki.node_serving.key,
            kubelet_kubeconfig=configs["node"],
            kube_proxy_kubeconfig=configs["kube-proxy"],
        )
        node.start(
            files,
            lambda name, argv: self._launch(name, argv, logs, env),
            self._wait,
            self._progress,
        )
        self._wait(f"node {self.node_name} Ready (kubelet)", self.components, self._node_ready)
        self._wait("kube-proxy healthy", self.components, node.kube_proxy_healthy)
        self._wait(
            "kubernetes Service endpoint (pods reach the API server)",
            self.components,
            self._kubernetes_endpoint_ready,
        )
        node.deploy_dns(configs["admin"])
        self._wait("cluster DNS (CoreDNS) ready", self.components, self._dns_ready)
        self._progress("cluster DNS ready (kube-system/coredns, Service kube-dns)")
        node.deploy_storage(configs["admin"])
        self._progress(
            f"default StorageClass {storage.CLASS_NAME}: {storage.VOLUME_COUNT} hostPath volumes"
        )

    def _bind_kubelet_api_admin(self) -> None:
        """The API server reaches kubelets (logs, exec) as kube-apiserver-kubelet-client; the
        kubelet authorizes it through the API server (webhook), so it needs this binding."""
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "localkube:apiserver-kubelet-api-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": "kube-apiserver-kubelet-client",
                }
            ],
        }
        assert self._probe is not None
        status, body = self._probe.post_json(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding
        )
        if status not in (201, 409):
            raise RuntimeError(f"creating the kubelet API binding: {status} {body[:300]!r}")

    # ----------------------------------------------------------------------------- multi-node
    def _service_ip(self) -> str:
        if self.plan is not None:
            return self.plan.service_ip
        return hostnet.SERVICE_IP if self.node == "kubelet" else components.SERVICE_IP

    def _serving_ips(self) -> tuple[str, ...]:
        if self.plan is not None:
            return (self.plan.api_ip, *(n.ip for n in self.nodes))
        return (hostnet.NODE_IP,) if self.node == "kubelet" else ()

    def _claim_slot(self, binary: Path) -> None:
        """Check the machine, claim a free address slot, remove a dead holder's leftovers."""
        reason = realnode.unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        if not 1 <= self.node_count <= 100:
            raise ValueError(f"nodes: {self.node_count} is out of range (1 to 100)")
        for program in (paths.pause_binary(), paths.coredns_binary()):
            if not program.is_file():
                raise FileNotFoundError(f"{program} is missing: run `make controlplane`")
        self.plan, stale = netplan.claim_slot(self.state_dir)
        (self.state_dir / "netplan.json").write_text(
            f'{{"slot": {self.plan.slot}, "nodes": {self.node_count}}}\n'
        )
        if stale is not None:
            self._progress(f"removing what a dead run left in slot {self.plan.slot} ({stale})")
            for problem in cleanup_multinode(stale, self.plan, binary):
                self._progress(f"  {problem}")

    def _start_nodes(
        self, pki: Pki, configs: dict[str, Path], logs: Path, env: dict[str, str]
    ) -> None:
        """All nodes' containerd, then kubelets and kube-proxies; wait until every node is
        Ready, Services work on each, and CoreDNS runs."""
        assert pki.node_serving is not None and self.plan is not None and self._probe is not None
        self._bind_kubelet_api_admin()

        def launch(name: str, argv: list[str]) -> Component:
            return self._launch(name, argv, logs, env)

        for node in self.nodes:
            status, body = self._probe.post_json("/api/v1/nodes", node.node_object())
            if status not in (201, 409):
                raise RuntimeError(f"creating Node {node.name}: {status} {body[:300]!r}")
            node.start_runtime(launch)
        for node in self.nodes:
            self._wait(f"{node.name} containerd socket", self.components, node.runtime_ready)
        archive = self.state_dir / "images" / "pause.oci.tar"
        containerd.write_pause_archive(paths.pause_binary(), archive)
        for node in self.nodes:
            node.import_image(archive)
        self._progress(f"pause image imported into {len(self.nodes)} node(s)")
        for node in self.nodes:
            files = NodeFiles(
                ca_cert=pki.ca.cert,
                serving_cert=pki.node_serving.cert,
                serving_key=pki.node_serving.key,
                kubelet_kubeconfig=configs[f"node-{node.name}"],
                kube_proxy_kubeconfig=configs["kube-proxy"],
            )
            node.start_agents(files, configs[f"node-{node.name}"], launch)
        for node in self.nodes:
            self._wait(
                f"node {node.name} Ready (kubelet)",
                self.components,
                lambda name=node.name: self._named_node_ready(name),  # type: ignore[misc]
            )
            self._wait(f"{node.name} kube-proxy healthy", self.components, node.kube_proxy_healthy)
        self._progress(f"{len(self.nodes)} node(s) Ready")
        self._wait(
            "kubernetes Service endpoint (pods reach the API server)",
            self.components,
            self._kubernetes_endpoint_ready,
        )
        dns_archive = self.state_dir / "images" / "coredns.oci.tar"
        image = clusterdns.write_image(paths.coredns_binary(), dns_archive)
        for node in self.nodes:
            node.import_image(dns_archive)
        dns_archive.unlink()
        admin = [str(paths.kubectl_binary()), f"--kubeconfig={configs['admin']}"]
        clusterdns.deploy(admin, image, self.plan.dns_ip)
        self._wait("cluster DNS (CoreDNS) ready", self.components, self._dns_ready)
        self._progress("cluster DNS ready (kube-system/coredns, Service kube-dns)")
        storage.prepare_dirs(self.state_dir)
        result = subprocess.run(
            [*admin, "apply", "-f", "-"],
            input=json.dumps(storage.manifests(self.state_dir)),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"creating the static volumes failed: {result.stderr.strip()}")
        self._progress(
            f"default StorageClass {storage.CLASS_NAME}: {storage.VOLUME_COUNT} hostPath volumes"
        )

    def node_by_name(self, name: str) -> NetnsNode:
        """The multi-node cluster's node ``name`` (e.g. ``localkube-n2``)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r}; nodes: {[n.name for n in self.nodes]}")

    def _named_node_ready(self, name: str) -> bool:
        saved, self.node_name = self.node_name, name
        try:
            return self._node_ready()
        finally:
            self.node_name = saved

    def _dns_ready(self) -> bool:
        deployment = self._probe_json("/apis/apps/v1/namespaces/kube-system/deployments/coredns")
        return bool(deployment and deployment.get("status", {}).get("readyReplicas"))

    def _kubernetes_endpoint_ready(self) -> bool:
        slices = self._probe_json(
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
            "?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes"
        )
        if not slices:
            return False
        return any(
            self.host in endpoint.get("addresses", [])
            for item in slices.get("items", [])
            for endpoint in item.get("endpoints") or []
        )

    def import_image(self, archive: Path) -> None:
        """Load an image archive (OCI layout or ``docker save``) into the real node's containerd
        (into every node's, with ``nodes=N``)."""
        if self.nodes:
            for node in self.nodes:
                node.import_image(archive)
            return
        if self.real_node is None:
            raise RuntimeError("images are only imported on the real node (node='kubelet')")
        self.real_node.import_image(archive)

    def node_agent_argv(self, kubeconfig: Path, pki: Pki) -> list[str]:
        assert pki.node_serving is not None
        return [
            sys.executable,
            "-m",
            "localkube.node_agent",
            "--kubeconfig",
            str(kubeconfig),
            "--node-name",
            self.node_name,
            "--state-dir",
            str(self.state_dir),
            "--serving-cert",
            str(pki.node_serving.cert),
            "--serving-key",
            str(pki.node_serving.key),
            "--client-ca",
            str(pki.ca.cert),
        ]

    def _write_pki_note(self, pki: Pki) -> None:
        (self.state_dir / "pki" / "README").write_text(
            "Throwaway PKI of a localkube dev cluster; regenerated on every start.\n"
            f"CA: {pki.ca.cert}\n"
        )

    def _launch(self, name: str, argv: list[str], logs: Path, env: dict[str, str]) -> Component:
        component = Component(name, argv + self._extra_args.get(name, []), logs / f"{name}.log")
        component.start(env, cwd=self.state_dir)
        self.components.append(component)
        self._progress(f"started {name} (pid {component.pid})")
        return component

    def _wait(self, what: str, watched: list[Component], ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for component in watched:
                if component.exit_code() is not None:
                    raise ComponentDied(f"while waiting for {what}: {component.describe_exit()}")
            if ready():
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"  {c.name}: {c.log}" for c in watched)
                raise TimeoutError(f"{what} not reached in {START_TIMEOUT:.0f}s; logs:\n{logs}")
            time.sleep(0.1)

    def _etcd_healthy(self, port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def _probe_json(self, path: str) -> Any | None:
        assert self._probe is not None
        return self._probe.get_json(path)

    def _apiserver_ready(self) -> bool:
        assert self._probe is not None
        try:
            status, _ = self._probe.get("/readyz")
        except OSError:
            return False
        return status == 200

    def _node_ready(self) -> bool:
        node = self._probe_json(f"/api/v1/nodes/{self.node_name}")
        if not node:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        tainted = any(
            t.get("key") == "node.kubernetes.io/not-ready"
            for t in node.get("spec", {}).get("taints", []) or []
        )
        return ready and not tainted

    # ----------------------------------------------------------------------------- monitoring
    def _watch(self) -> None:
        reported: set[str] = set()
        while not self._stopping.wait(0.5):
            for component in list(self.components):
                if component.name not in reported and component.exit_code() is not None:
                    reported.add(component.name)
                    message = f"localkube: component {component.describe_exit()}"
                    self.failures.append(message)
                    self._on_failure(message)

    def check(self) -> None:
        """Raise :class:`ComponentDied` if any component has exited since start."""
        if not self._stopping.is_set():
            for component in self.components:
                if component.exit_code() is not None:
                    raise ComponentDied(f"localkube: component {component.describe_exit()}")

    def stop(self, grace: float = 10.0) -> None:
        """Stop everything (idempotent); remove the state directory if it is a temporary one."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join()
            self._monitor = None
        if self.real_node is not None:  # pods, runtime and host network, in dependency order
            self.stop_problems += self.real_node.stop(grace, lambda: sweep(self.cluster_id))
            self.real_node = None
            for problem in self.stop_problems:
                self._on_failure(f"localkube: node teardown: {problem}")
        if self.plan is not None:
            problems = []
            for node in self.nodes:
                problems += node.stop(grace)
            sweep(self.cluster_id)
            problems += nodenet.teardown(self.plan, self.node_count)
            if not _other_real_nodes(self.plan):
                problems += nodenet.restore_sysctls(self.state_dir)
            netplan.release_slot(self.plan, self.state_dir)
            self.plan = None
            self.stop_problems += [p for p in problems if not p.startswith("killed ")]
            for problem in problems:
                self._on_failure(f"localkube: node teardown: {problem}")
        for component in reversed(self.components):
            component.stop(grace)
        sweep(self.cluster_id)
        if self._owns_dir and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)


def _other_real_nodes(plan: NetPlan) -> bool:
    """Whether another run with real nodes (multi-node or host-network) is live on the host."""
    record = hostnet.owner()
    if record is not None and hostnet.owner_alive(record):
        return True
    return any(slot != plan.slot for slot in netplan.live_slots())


def cleanup_multinode(state_dir: Path, plan: NetPlan, binary: Path) -> list[str]:
    """Remove what a multi-node run in ``state_dir`` (slot of ``plan``) left behind once its
    processes are gone: pods (through each node's containerd, started once more), container
    processes, cgroup trees, mounts, the namespaces, bridge, routes and chains."""
    problems: list[str] = []
    nodes_dir = state_dir / "nodes"
    for node_dir in sorted(nodes_dir.iterdir()) if nodes_dir.is_dir() else []:
        index = node_dir.name.removeprefix(node_name(0)[:-1])
        if not index.isdigit():
            continue
        problems += realnode.reset_pods(node_dir, binary)
        problems += cleanup_node(node_dir, plan.cgroup_root(int(index)))
    problems += nodenet.teardown(plan, 0)
    return problems
