"""The real node: containerd + kubelet + kube-proxy as local processes (``--node=kubelet``).

Modeled on Kubernetes' hack/local-up-cluster.sh: the control plane of :mod:`localkube.cluster`
plus a kubelet that runs pods as real containers through containerd (CRI, runc, CNI bridge) and
kube-proxy in iptables mode. Needs root; :func:`unavailable_reason` says why it cannot run.

Guarantees:

- :meth:`RealNode.start` starts containerd with its own everything (:mod:`localkube.containerd`),
  imports the pause image built from our own Go program, then starts the kubelet and kube-proxy;
  host networking is set up first (:mod:`localkube.hostnet`); :meth:`RealNode.deploy_dns` adds
  the cluster DNS (:mod:`localkube.clusterdns`);
- :meth:`RealNode.stop` (and :func:`cleanup` for the leftovers of a node whose owner died) leaves
  nothing behind: pods are removed through the CRI (network namespaces, CNI leases, mounts
  released by containerd), any container process still left in the ``kubepods`` cgroups is
  killed, kube-proxy removes its own iptables rules (``--cleanup``), every mount under the state
  directory is detached, the kubelet's empty cgroups and its ``/var/log/containers`` links into
  the state directory are removed, and the host network is torn down. After a crash (the owner
  was SIGKILLed, so containerd is gone with pods still set up) :func:`cleanup` starts the node's
  containerd once more, on the same state, to remove the pods through the CRI first.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localkube import clusterdns, containerd, hostnet, kubelet, storage
from localkube.containerd import ContainerdLayout
from localkube.process import Component, free_port

CGROUP_ROOT = Path("/sys/fs/cgroup")
QOS_CGROUP = "kubepods"
CONTAINER_LOGS = Path("/var/log/containers")
#: Chains a kubelet writes when ``makeIPTablesUtilChains`` is on (ours is off; these go anyway,
#: e.g. after a kubelet of another configuration); kube-proxy's own go with ``--cleanup``.
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
_MNT_DETACH = 2
_LIBC = ctypes.CDLL(None, use_errno=True)

Launch = Callable[[str, list[str]], Component]
Wait = Callable[[str, list[Component], Callable[[], bool]], None]


def unavailable_reason() -> str | None:
    """Why the real node cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "the real node (kubelet + containerd) needs root"
    missing = containerd.missing_host_tools()
    if missing:
        return f"missing on this machine: {', '.join(missing)} (`make install-system`)"
    return None


@dataclass(frozen=True)
class NodeFiles:
    """Paths of the node's credentials (from :mod:`localkube.certs`) and kubeconfigs."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    kubelet_kubeconfig: Path
    kube_proxy_kubeconfig: Path


class RealNode:
    """One real node; see the module doc."""

    def __init__(
        self,
        state_dir: Path,
        binary: Path,
        pause_binary: Path,
        node_name: str,
        coredns_binary: Path,
    ) -> None:
        self.state_dir = state_dir
        self.binary = binary
        self.pause_binary = pause_binary
        self.coredns_binary = coredns_binary
        self.node_name = node_name
        self.layout = ContainerdLayout(state_dir / "containerd")
        self.kube_proxy_healthz_port = 0
        self.components: dict[str, Component] = {}
        self.claimed = False  # True once the host network is ours (then stop() cleans it)

    # ------------------------------------------------------------------------------- start
    def setup_host(self, progress: Callable[[str], None]) -> None:
        """Check the machine and claim and set up the host network (before the API server,
        which binds the node address). Raises :class:`localkube.hostnet.HostBusy` when another
        live real node owns it, RuntimeError when the machine cannot run a real node."""
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        for program in (self.pause_binary, self.coredns_binary):
            if not program.is_file():
                raise FileNotFoundError(f"{program} is missing: run `make controlplane`")
        stale = hostnet.claim(self.state_dir)
        self.claimed = True
        if stale is not None:
            progress(f"removing what a dead real node left behind (state {stale})")
            for problem in cleanup(stale, self.binary):
                progress(f"  {problem}")
        hostnet.setup(self.state_dir)
        progress(f"host network: {hostnet.API_LINK} {hostnet.NODE_IP}, pods {hostnet.POD_CIDR}")

    def start(
        self, files: NodeFiles, launch: Launch, wait: Wait, progress: Callable[[str], None]
    ) -> None:
        """containerd (then the pause image), kubelet and kube-proxy, after :meth:`setup_host`."""
        containerd.write_config(self.layout)
        runtime = launch("containerd", containerd.argv(self.layout))
        self.components["containerd"] = runtime
        wait("containerd socket", [runtime], self._containerd_ready)
        archive = self.state_dir / "images" / "pause.oci.tar"
        containerd.write_pause_archive(self.pause_binary, archive)
        containerd.import_image(self.layout, archive)
        progress(f"pause image {containerd.PAUSE_IMAGE} imported")

        config = kubelet.write_json(
            self.state_dir / "kubelet" / "config.json",
            kubelet.kubelet_config(
                port=free_port(),
                ca_cert=files.ca_cert,
                serving=(files.serving_cert, files.serving_key),
                runtime_endpoint=self.layout.endpoint,
                pod_logs_dir=self.state_dir / "pod-logs",
                cluster_dns=[hostnet.DNS_IP],
            ),
        )
        self.components["kubelet"] = launch(
            "kubelet",
            kubelet.kubelet_argv(
                self.binary,
                config=config,
                kubeconfig=files.kubelet_kubeconfig,
                root_dir=self.state_dir / "kubelet" / "root",
                node_name=self.node_name,
            ),
        )
        self.kube_proxy_healthz_port = free_port()
        proxy_config = kubelet.write_json(
            self.state_dir / "kube-proxy" / "config.json",
            kubelet.kube_proxy_config(
                kubeconfig=files.kube_proxy_kubeconfig,
                node_name=self.node_name,
                healthz_port=self.kube_proxy_healthz_port,
                metrics_port=free_port(),
            ),
        )
        self.components["kube-proxy"] = launch(
            "kube-proxy", kubelet.kube_proxy_argv(self.binary, config=proxy_config)
        )

    def _containerd_ready(self) -> bool:
        return containerd.ready(self.layout)

    def deploy_dns(self, admin_kubeconfig: Path) -> None:
        """Import the CoreDNS image and apply the cluster DNS (see :mod:`localkube.clusterdns`)."""
        archive = self.state_dir / "images" / "coredns.oci.tar"
        image = clusterdns.write_image(self.coredns_binary, archive)
        containerd.import_image(self.layout, archive)
        archive.unlink()
        clusterdns.deploy([str(self.binary), "kubectl", f"--kubeconfig={admin_kubeconfig}"], image)

    def deploy_storage(self, admin_kubeconfig: Path) -> None:
        """The default StorageClass and static hostPath volumes (see :mod:`localkube.storage`)."""
        storage.prepare_dirs(self.state_dir)
        result = subprocess.run(
            [str(self.binary), "kubectl", f"--kubeconfig={admin_kubeconfig}", "apply", "-f", "-"],
            input=json.dumps(storage.manifests(self.state_dir)),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"creating the static volumes failed: {result.stderr.strip()}")

    def kube_proxy_healthy(self) -> bool:
        """kube-proxy's /healthz answers 200 (it has synced its rules at least once)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.kube_proxy_healthz_port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def import_image(self, archive: Path) -> None:
        """Make an image archive (OCI layout or ``docker save``) available to pods."""
        containerd.import_image(self.layout, archive)

    # ------------------------------------------------------------------------------- stop
    def stop(self, grace: float, sweep: Callable[[], object]) -> list[str]:
        """Tear the node down in dependency order; ``sweep`` stops leftover marked processes
        (containerd's shims). Returns what could not be cleaned (empty: everything)."""
        problems: list[str] = []
        if not self.claimed:  # never touch a host network that another node owns
            return problems
        self.claimed = False
        if "kubelet" in self.components:
            self.components["kubelet"].stop(grace)
        runtime = self.components.get("containerd")
        reset_done = runtime is not None and runtime.exit_code() is None
        if reset_done:
            problems += _cri_reset(self.binary, self.layout)
        if "kube-proxy" in self.components:
            self.components["kube-proxy"].stop(grace)
        if runtime is not None:
            runtime.stop(grace)
        sweep()
        problems += cleanup(self.state_dir, self.binary, pods_removed=reset_done)
        return problems


def cleanup_if_owner(state_dir: Path, binary: Path) -> list[str]:
    """:func:`cleanup`, unless another live real node owns the host (then nothing is touched)."""
    record = hostnet.owner()
    if (
        record is not None
        and record.get("state_dir") != str(state_dir)
        and hostnet.owner_alive(record)
    ):
        return []
    return cleanup(state_dir, binary)


def cleanup(state_dir: Path, binary: Path, *, pods_removed: bool = False) -> list[str]:
    """Remove everything a real node with state in ``state_dir`` may have left on the host, once
    its processes are gone (see the module doc). Idempotent; returns what could not be cleaned.

    Unless ``pods_removed`` (the CRI reset already ran), the node's containerd is started once
    more to remove its pods through the CRI, as only it can undo their network setup."""
    problems: list[str] = [] if pods_removed else reset_pods(state_dir, binary)
    killed = kill_cgroup_processes()
    if killed:
        problems.append(f"killed {killed} leftover container process(es)")
        time.sleep(0.5)
    rules = subprocess.run(
        kubelet.kube_proxy_cleanup_argv(binary), capture_output=True, text=True, check=False
    )
    if rules.returncode != 0:
        problems.append(f"kube-proxy --cleanup: {rules.stderr.strip()[-500:]}")
    problems += remove_kubelet_chains()
    problems += unmount_under(state_dir)
    problems += remove_cgroups()
    remove_log_links(state_dir)
    problems += hostnet.teardown(state_dir)
    return problems


def _cri_reset(binary: Path, layout: ContainerdLayout) -> list[str]:
    reset = subprocess.run(
        [str(binary), "cri-reset", f"--endpoint={layout.endpoint}", "--timeout=60s"],
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    return [f"cri-reset: {reset.stderr.strip()}"] if reset.returncode != 0 else []


def reset_pods(state_dir: Path, binary: Path) -> list[str]:
    """Remove the pods of a real node whose containerd is gone: start that containerd again (same
    config and state, so it finds its sandboxes), remove them over the CRI, stop it."""
    layout = ContainerdLayout(state_dir / "containerd")
    if not layout.config.is_file() or not shutil.which("containerd"):
        return []
    log = state_dir / "logs" / "containerd-cleanup.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        runtime = subprocess.Popen(
            containerd.argv(layout),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and runtime.poll() is None:
            probe = subprocess.run(
                containerd.ctr(layout, "version"), capture_output=True, check=False
            )
            if probe.returncode == 0:
                return _cri_reset(binary, layout)
            time.sleep(0.2)
        return [f"containerd for the pod cleanup did not start; see {log}"]
    finally:
        runtime.terminate()
        try:
            runtime.wait(30)
        except subprocess.TimeoutExpired:
            runtime.kill()
            runtime.wait()


def remove_kubelet_chains() -> list[str]:
    """Delete :data:`KUBELET_CHAINS` and the rules jumping to them (IPv4 and IPv6)."""
    problems = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listing = hostnet.run(tool, "-w", "-t", table, "-S", check=False)
            if listing.returncode != 0:
                continue
            for line in listing.stdout.splitlines():
                words = line.split()
                jumps = words[:1] == ["-A"] and "-j" in words
                if jumps and words[words.index("-j") + 1] in KUBELET_CHAINS:
                    hostnet.run(tool, "-w", "-t", table, "-D", *words[1:], check=False)
            for chain in KUBELET_CHAINS:
                if f"-N {chain}" in listing.stdout.splitlines():
                    hostnet.run(tool, "-w", "-t", table, "-F", chain, check=False)
                    if hostnet.run(tool, "-w", "-t", table, "-X", chain, check=False).returncode:
                        problems.append(f"{tool} -t {table} -X {chain} failed")
    return problems


def _qos_dirs(top: str = QOS_CGROUP) -> list[Path]:
    """The kubelet's top-level cgroup ``top`` (``kubepods``, or a multi-node kubelet's
    ``cgroupRoot``) in every cgroup hierarchy that has one."""
    found = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        candidate = hierarchy / top
        if candidate.is_dir():
            found.append(candidate)
    if (CGROUP_ROOT / "cgroup.controllers").exists() and (CGROUP_ROOT / top).is_dir():
        found.append(CGROUP_ROOT / top)  # a pure cgroup v2 host
    return found


def kill_cgroup_processes(top: str = QOS_CGROUP) -> int:
    """SIGKILL every process in a ``top`` cgroup (pods the CRI could not remove)."""
    pids: set[int] = set()
    for qos in _qos_dirs(top):
        for procs in qos.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def remove_cgroups(top: str = QOS_CGROUP) -> list[str]:
    """Remove the kubelet's (empty) ``top`` cgroup trees, deepest first."""
    problems = []
    for qos in _qos_dirs(top):
        directories = sorted(
            (p for p in qos.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        )
        for directory in [*directories, qos]:
            for _ in range(20):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # processes of a just-killed container still exiting
            else:
                problems.append(f"cgroup {directory} could not be removed")
    return problems


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory`` (from /proc/self/mountinfo), deepest first."""
    prefix = str(directory.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_under(directory: Path) -> list[str]:
    """Detach every mount below ``directory`` (lazy unmount: busy mounts go once released)."""
    problems = []
    for point in mounts_under(directory):
        if _LIBC.umount2(str(point).encode(), _MNT_DETACH) != 0:
            errno = ctypes.get_errno()
            if errno not in (22,):  # EINVAL: no longer a mount point (a parent went first)
                problems.append(f"umount {point}: {os.strerror(errno)}")
    return problems


def remove_log_links(state_dir: Path) -> None:
    """Remove the kubelet's ``/var/log/containers`` symlinks that point into ``state_dir``."""
    if not CONTAINER_LOGS.is_dir():
        return
    prefix = str(state_dir.resolve()) + "/"
    for link in CONTAINER_LOGS.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(prefix):
                link.unlink()
