"""The network of a multi-node cluster: one bridge on the host, one network namespace per node.

Layout (addresses from :class:`localkube.netplan.NetPlan`):

- the host gets the run's bridge (``lkb<S>``) with the API address (``10.x.255.1/24``);
- node ``i`` gets the network namespace ``lk<S>-n<i>`` (``ip netns``), joined to the bridge by a
  veth pair: host end ``lk<S>n<i>`` (a bridge port), node end ``eth0`` with the node IP, default
  route via the API address. Inside it the CNI bridge plugin makes the node's own pod bridge
  (``lkbr0``, as on the host-network real node: the name is private to the namespace);
- the host routes each node's pod /24 via that node's IP, so pods on different nodes, the
  host and the API server reach each other (pod -> its node -> host -> other node -> pod).

Guarantees:

- nothing leaves the machine: the host's ``mangle`` FORWARD chain drops everything routed from
  the run's /16 to outside it (chain ``LOCALKUBE<S>-EGRESS``); the filter FORWARD chain accepts
  traffic within the /16 whatever the policy (Docker sets DROP) (``LOCALKUBE<S>-FORWARD``);
- :func:`cut` sets the host end of a node's veth down (the node loses the API server, the other
  nodes and their pods, while its own processes and pods keep running); :func:`heal` undoes it;
- :func:`teardown` is idempotent: it deletes the namespaces (with everything in them: veths,
  pod bridge, kube-proxy's iptables rules), the bridge, routes and chains.
"""

from __future__ import annotations

import json
from pathlib import Path

from localkube.hostnet import SNAPSHOT, SYSCTLS, link_exists, read_sysctl, run, write_sysctl
from localkube.netplan import NetPlan

NETNS_DIR = Path("/run/netns")


def in_netns(netns: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the network namespace ``netns`` only (mounts, cgroups and /sys stay
    the host's: ``ip netns exec`` would remount /sys and hide the cgroup hierarchies)."""
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--", *argv]


def netns_exists(netns: str) -> bool:
    return (NETNS_DIR / netns).exists()


def setup(plan: NetPlan, nodes: int) -> None:
    """Create the bridge, the namespaces, veths, addresses, routes and chains (see module doc)."""
    teardown(plan, nodes)
    prefix_len = plan.link_cidr.split("/")[1]
    run("ip", "link", "add", plan.bridge, "type", "bridge")
    run("ip", "addr", "add", f"{plan.api_ip}/{prefix_len}", "dev", plan.bridge)
    run("ip", "link", "set", plan.bridge, "up")
    for index in range(1, nodes + 1):
        add_node(plan, index)
    _add_chains(plan)
    write_sysctl("net/ipv4/ip_forward", "1")


def add_node(plan: NetPlan, index: int) -> None:
    """The namespace, veth pair, node address and routes of node ``index``."""
    netns, veth, prefix_len = plan.netns(index), plan.veth(index), plan.link_cidr.split("/")[1]
    run("ip", "netns", "add", netns)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    run("ip", "link", "set", veth, "master", plan.bridge)
    run("ip", "link", "set", veth, "up")
    inside = ["ip", "netns", "exec", netns]
    run(*inside, "ip", "link", "set", "lo", "up")
    run(*inside, "ip", "addr", "add", f"{plan.node_ip(index)}/{prefix_len}", "dev", "eth0")
    run(*inside, "ip", "link", "set", "eth0", "up")
    run(*inside, "ip", "route", "add", "default", "via", plan.api_ip)
    # Forwarding between the pods' bridge and eth0, and Service rules for bridged pod traffic.
    run(*inside, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    run(*inside, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", check=False)
    run("ip", "route", "replace", plan.pod_cidr(index), "via", plan.node_ip(index))


def _add_chains(plan: NetPlan) -> None:
    run("iptables", "-w", "-N", plan.forward_chain)
    run(
        "iptables", "-w", "-A", plan.forward_chain, "-s", plan.run_cidr, "-d", plan.run_cidr,
        "-j", "ACCEPT", "-m", "comment", "--comment", "localkube: within the cluster",
    )  # fmt: skip
    run("iptables", "-w", "-I", "FORWARD", "1", "-j", plan.forward_chain)
    run("iptables", "-w", "-t", "mangle", "-N", plan.egress_chain)
    run(
        "iptables", "-w", "-t", "mangle", "-A", plan.egress_chain,
        "-s", plan.run_cidr, "!", "-d", plan.run_cidr, "-j", "DROP",
        "-m", "comment", "--comment", "localkube: nothing leaves this machine",
    )  # fmt: skip
    run("iptables", "-w", "-t", "mangle", "-I", "FORWARD", "1", "-j", plan.egress_chain)


def _remove_chains(plan: NetPlan) -> None:
    for table, chain in (("mangle", plan.egress_chain), ("filter", plan.forward_chain)):
        while (
            run("iptables", "-w", "-t", table, "-D", "FORWARD", "-j", chain, check=False).returncode
            == 0
        ):
            pass
        run("iptables", "-w", "-t", table, "-F", chain, check=False)
        run("iptables", "-w", "-t", table, "-X", chain, check=False)


def cut(plan: NetPlan, index: int) -> None:
    """Cut node ``index`` off: its veth's host end goes down (see the module doc)."""
    run("ip", "link", "set", plan.veth(index), "down")


def heal(plan: NetPlan, index: int) -> None:
    """Undo :func:`cut` (the pod route goes with the link, so it is put back)."""
    run("ip", "link", "set", plan.veth(index), "up")
    run("ip", "route", "replace", plan.pod_cidr(index), "via", plan.node_ip(index))


def is_cut(plan: NetPlan, index: int) -> bool:
    flags = Path(f"/sys/class/net/{plan.veth(index)}/flags")
    return flags.exists() and not int(flags.read_text(), 16) & 1


def teardown(plan: NetPlan, nodes: int) -> list[str]:
    """Remove everything :func:`setup` made (idempotent); return what could not be removed."""
    problems = []
    found = {
        int(p.name.rsplit("-n", 1)[1])
        for p in (NETNS_DIR.glob(f"lk{plan.slot}-n*") if NETNS_DIR.is_dir() else [])
        if p.name.rsplit("-n", 1)[1].isdigit()
    }
    for index in sorted(found | set(range(1, nodes + 1))):
        if netns_exists(plan.netns(index)):
            result = run("ip", "netns", "del", plan.netns(index), check=False)
            if result.returncode != 0:
                problems.append(f"ip netns del {plan.netns(index)}: {result.stderr.strip()}")
        run("ip", "route", "del", plan.pod_cidr(index), check=False)
        if link_exists(plan.veth(index)):
            run("ip", "link", "del", plan.veth(index), check=False)
    if link_exists(plan.bridge):
        result = run("ip", "link", "del", plan.bridge, check=False)
        if result.returncode != 0:
            problems.append(f"ip link del {plan.bridge}: {result.stderr.strip()}")
    _remove_chains(plan)
    return problems


def snapshot_sysctls(state_dir: Path) -> None:
    """Record the host sysctls the nodes may change (:data:`localkube.hostnet.SYSCTLS`)."""
    snapshot = {name: value for name in SYSCTLS if (value := read_sysctl(name)) is not None}
    (state_dir / SNAPSHOT).write_text(json.dumps(snapshot, indent=1))


def restore_sysctls(state_dir: Path) -> list[str]:
    """Put back the values :func:`snapshot_sysctls` recorded; the caller does this only when no
    other cluster with real nodes runs on the host (they share these sysctls)."""
    problems: list[str] = []
    try:
        snapshot = json.loads((state_dir / SNAPSHOT).read_text())
    except (OSError, ValueError):
        return problems
    for name, value in snapshot.items():
        if read_sysctl(name) != value:
            try:
                write_sysctl(name, value)
            except OSError as exc:
                problems.append(f"restoring sysctl {name}={value}: {exc}")
    return problems
