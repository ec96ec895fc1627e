"""The real node's host networking: addresses, the pod bridge, the egress guard, sysctls.

Address plan (chosen to collide with nothing on a developer machine or CI runner: not Docker's
172.17-31/16 and 192.168/16 pools, not the 10.0.0.0/24 of the node-agent mode, not kind's
10.244/16 and 10.96/12, not containerd's example 10.88/16):

- pods: :data:`POD_CIDR` (10.213.0.0/16); the node's podCIDR (allocated by the controller-manager's
  node-ipam controller) is a /24 of it, whose first address is the bridge :data:`BRIDGE` gateway;
- Services: :data:`SERVICE_CIDR` (10.214.0.0/24), the ``kubernetes`` Service at 10.214.0.1;
- the node and API server address: :data:`NODE_IP` (10.215.0.1/32) on :data:`API_LINK`, a
  link of our own. It is the API server's bind and advertise address and the kubelet's node IP,
  so pods reach the API server through the ``kubernetes`` Service (kube-proxy DNATs to it) and
  nothing of the cluster listens on the machine's real interfaces. The link is a bridge without
  ports, standing in for a ``dummy`` link: kernels without the dummy driver (this project's CI
  VMs) have bridges, and a local address needs nothing more. It cannot be the pod bridge itself:
  the CNI bridge plugin refuses a bridge that already has another IPv4 address.

Guarantees:

- :func:`claim` refuses while another live localkube real node owns the host (the owner record
  :data:`OWNER_FILE`) and names a dead owner's state directory, for its leftovers to be removed;
- pods never reach any address outside this machine: the ``mangle`` table's FORWARD chain drops
  everything routed from :data:`POD_CIDR` to anywhere but :data:`POD_CIDR` (our own chain
  :data:`EGRESS_CHAIN`, which kube-proxy never touches). Traffic to the node's own addresses is
  delivered locally and is unaffected;
- pod-to-pod traffic (also through a Service) is accepted in the filter table's FORWARD chain
  (:data:`FORWARD_CHAIN`), whatever its policy: Docker, when running, sets it to DROP;
- the sysctls the node components change (:data:`SYSCTLS`: forwarding, bridge netfilter, and the
  kernel tunables the kubelet sets) are recorded before start and restored by :func:`teardown`
  (unless a multi-node run, :mod:`localkube.netplan`, is live: the last run restores them);
- :func:`teardown` is idempotent and removes both links and both chains.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from localkube.netplan import live_slots
from localkube.process import alive, start_time

POD_CIDR = "10.213.0.0/16"
NODE_CIDR_MASK = 24
SERVICE_CIDR = "10.214.0.0/24"
SERVICE_IP = "10.214.0.1"
DNS_IP = "10.214.0.10"
NODE_IP = "10.215.0.1"
BRIDGE = "lkbr0"
API_LINK = "lkapi0"
EGRESS_CHAIN = "LOCALKUBE-EGRESS"
FORWARD_CHAIN = "LOCALKUBE-FORWARD"
CHAINS = (("mangle", EGRESS_CHAIN), ("filter", FORWARD_CHAIN))
OWNER_FILE = Path("/run/localkube-node.json")
SNAPSHOT = "hostnet-sysctls.json"

#: sysctls (paths under /proc/sys) that localkube, the CNI bridge plugin, the kubelet or kube-proxy
#: may change; their values are restored on teardown.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


class HostBusy(RuntimeError):
    """Another live localkube real node owns the host's node network."""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host networking command; raise with its stderr when ``check`` and it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name).write_text(value + "\n")


def owner() -> dict[str, str] | None:
    """The owner record of the host's node network, or None."""
    try:
        data = json.loads(OWNER_FILE.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def owner_alive(record: dict[str, str]) -> bool:
    pid = int(record.get("pid", "0"))
    return pid > 0 and alive(pid) and start_time(pid) == record.get("start_time")


def claim(state_dir: Path) -> Path | None:
    """Record this process as the owner of the host's node network; raise :class:`HostBusy`
    when a live one owns it. Returns the state directory of a dead previous owner (whose
    leftovers the caller must clean up), else None."""
    record = owner()
    stale = None
    if record is not None:
        if owner_alive(record):
            raise HostBusy(
                f"a localkube real node is already up (state {record.get('state_dir')}, "
                f"pid {record.get('pid')}); stop it with `localkube down` first"
            )
        stale = Path(record.get("state_dir", "/nonexistent"))
    pid = os.getpid()
    OWNER_FILE.write_text(
        json.dumps({"pid": str(pid), "start_time": start_time(pid), "state_dir": str(state_dir)})
    )
    return stale


def setup(state_dir: Path) -> None:
    """Set up the node network (after :func:`claim`; see the module doc)."""
    snapshot = {name: value for name in SYSCTLS if (value := read_sysctl(name)) is not None}
    (state_dir / SNAPSHOT).write_text(json.dumps(snapshot, indent=1))

    for stale in (API_LINK, BRIDGE):
        if link_exists(stale):
            run("ip", "link", "del", stale)
    run("ip", "link", "add", API_LINK, "type", "bridge")
    run("ip", "addr", "add", f"{NODE_IP}/32", "dev", API_LINK)
    run("ip", "link", "set", API_LINK, "up")

    _remove_chains()
    run("iptables", "-w", "-N", FORWARD_CHAIN)
    run(
        "iptables", "-w", "-A", FORWARD_CHAIN, "-s", POD_CIDR, "-d", POD_CIDR, "-j", "ACCEPT",
        "-m", "comment", "--comment", "localkube: pod to pod",
    )  # fmt: skip
    run("iptables", "-w", "-I", "FORWARD", "1", "-j", FORWARD_CHAIN)
    run("iptables", "-w", "-t", "mangle", "-N", EGRESS_CHAIN)
    run(
        "iptables", "-w", "-t", "mangle", "-A", EGRESS_CHAIN,
        "-s", POD_CIDR, "!", "-d", POD_CIDR, "-j", "DROP",
        "-m", "comment", "--comment", "localkube: pods never leave this machine",
    )  # fmt: skip
    run("iptables", "-w", "-t", "mangle", "-I", "FORWARD", "1", "-j", EGRESS_CHAIN)

    # Routed pod traffic (pod -> Service -> pod, replies) needs forwarding; bridged traffic between
    # pods must pass iptables so that kube-proxy's Service rules see it (hairpin).
    write_sysctl("net/ipv4/ip_forward", "1")
    if read_sysctl("net/bridge/bridge-nf-call-iptables") is not None:
        write_sysctl("net/bridge/bridge-nf-call-iptables", "1")


def _remove_chains() -> None:
    for table, chain in CHAINS:
        while (
            run("iptables", "-w", "-t", table, "-D", "FORWARD", "-j", chain, check=False).returncode
            == 0
        ):
            pass
        run("iptables", "-w", "-t", table, "-F", chain, check=False)
        run("iptables", "-w", "-t", table, "-X", chain, check=False)


def chain_exists(table: str, chain: str) -> bool:
    return run("iptables", "-w", "-t", table, "-S", chain, check=False).returncode == 0


def teardown(state_dir: Path) -> list[str]:
    """Remove the links and the egress guard, restore the sysctls; return what went wrong."""
    problems: list[str] = []
    for name in (BRIDGE, API_LINK):
        if link_exists(name):
            result = run("ip", "link", "del", name, check=False)
            if result.returncode != 0:
                problems.append(f"ip link del {name}: {result.stderr.strip()}")
    _remove_chains()
    problems += [
        f"iptables chain {table}/{chain} could not be removed"
        for table, chain in CHAINS
        if chain_exists(table, chain)
    ]
    try:
        snapshot = json.loads((state_dir / SNAPSHOT).read_text())
    except (OSError, ValueError):
        snapshot = {}
    if live_slots():  # a multi-node run still needs forwarding: it restores them when it ends
        snapshot = {}
    for name, value in snapshot.items():
        if read_sysctl(name) != value:
            try:
                write_sysctl(name, value)
            except OSError as exc:
                problems.append(f"restoring sysctl {name}={value}: {exc}")
    record = owner()
    if record is not None and (
        record.get("state_dir") == str(state_dir) or not owner_alive(record)
    ):
        with contextlib.suppress(FileNotFoundError):
            OWNER_FILE.unlink()
    return problems
