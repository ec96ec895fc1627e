"""``localkube up --node=kubelet`` / ``down`` from the CLI: down leaves nothing on the host, even
after the supervisor was killed with a pod running (its network namespace, mounts and cgroups
included). Runs in make test's first pytest run, where no other real node is up (one real node per
machine at a time; the second run shares one node among the other real-node tests)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.cluster import wait_for
from localkube import containerd, hostnet, netplan, nodenet, paths, realnode
from localkube.process import alive
from localkube.state import ClusterState

pytestmark = pytest.mark.timeout(300)
NETNS_DIR = Path("/var/run/netns")
# A multi-node run's host chains (LOCALKUBE<slot>-EGRESS/-FORWARD) belong to that run, live or
# dead, never to the host-network node; its kube-proxies write their KUBE- rules inside the nodes'
# network namespaces, so they never show up here.
MULTINODE_CHAIN = re.compile(r"LOCALKUBE\d+-")


def localkube(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localkube", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def kubectl(state_dir: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(paths.kubectl_binary()), f"--kubeconfig={state_dir / 'kubeconfig'}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def host_leftovers(state_dir: Path) -> list[str]:
    """Everything of a real node that could outlive it on this host."""
    found = [
        f"link {name}" for name in (hostnet.BRIDGE, hostnet.API_LINK) if hostnet.link_exists(name)
    ]
    for tool in ("iptables-save", "ip6tables-save"):
        dump = subprocess.run([tool], capture_output=True, text=True, check=True).stdout
        found += [
            f"{tool}: {line}"
            for line in dump.splitlines()
            if ("KUBE-" in line or "LOCALKUBE" in line) and not MULTINODE_CHAIN.search(line)
        ]
    found += [f"mount {p}" for p in realnode.mounts_under(state_dir)] if state_dir.exists() else []
    found += [f"cgroup {p}" for p in realnode._qos_dirs()]
    if hostnet.OWNER_FILE.exists():
        found.append(f"owner record {hostnet.OWNER_FILE}")
    return found


def test_cp_realnode_down_after_supervisor_killed_leaves_nothing(tmp_path: Path) -> None:
    reason = realnode.unavailable_reason()
    if reason:
        pytest.skip(f"no real node on this machine: {reason}")
    state_dir = tmp_path / "cluster"
    forward_before = hostnet.read_sysctl("net/ipv4/ip_forward")
    netns_before = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()

    up = localkube("up", "--node=kubelet", "--state-dir", str(state_dir))
    assert up.returncode == 0, up.stdout + up.stderr
    state = ClusterState.load(state_dir)
    assert state is not None and state.node == "kubelet"
    assert {"containerd", "kubelet", "kube-proxy"} <= set(state.components)
    assert "node-agent" not in state.components
    status = localkube("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout

    # A running pod (of the pause image, which the node always has): netns, mounts, cgroups.
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "main", "image": containerd.PAUSE_IMAGE}]},
    }
    kubectl(state_dir, "apply", "-f", "-", stdin=json.dumps(manifest))
    wait_for(
        "pod sleeper Running",
        lambda: (
            json.loads(kubectl(state_dir, "get", "pod", "sleeper", "-o", "json"))["status"].get(
                "phase"
            )
            == "Running"
        ),
        timeout=60,
    )
    pod_netns = set(os.listdir(NETNS_DIR)) - netns_before
    assert pod_netns, "the pod has a network namespace of its own"
    assert realnode.mounts_under(state_dir), "the pod's rootfs and volumes are mounted"

    os.kill(state.supervisor_pid, signal.SIGKILL)  # a crash: nobody tears the node down
    wait_for("supervisor gone", lambda: not alive(state.supervisor_pid), timeout=10)

    down = localkube("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "node cleanup" not in down.stdout, down.stdout  # no problem reported
    assert not state_dir.exists()
    assert host_leftovers(state_dir) == []
    assert not (pod_netns & set(os.listdir(NETNS_DIR)))
    assert hostnet.read_sysctl("net/ipv4/ip_forward") == forward_before


def test_cp_multinode_down_without_state_removes_what_a_dead_run_holds(tmp_path: Path) -> None:
    """A multi-node run killed before its state was written (or with its state half removed)
    still holds its slot, bridge, namespaces and chains: ``down`` on its directory removes them."""
    reason = realnode.unavailable_reason()
    if reason:
        pytest.skip(f"no real node on this machine: {reason}")
    state_dir = tmp_path / "dead-run"
    (state_dir / "nodes").mkdir(parents=True)
    slot = next(s for s in reversed(range(netplan.SLOTS)) if netplan.holder(s) is None)
    plan = netplan.NetPlan(slot)
    netplan.SLOT_DIR.mkdir(parents=True, exist_ok=True)
    (netplan.SLOT_DIR / f"{slot}.json").write_text(
        json.dumps({"pid": "999999999", "start_time": "0", "state_dir": str(state_dir)})
    )
    try:
        nodenet.setup(plan, 1)
        assert hostnet.link_exists(plan.bridge) and nodenet.netns_exists(plan.netns(1))
        assert (
            plan.egress_chain
            in subprocess.run(
                ["iptables-save", "-t", "mangle"], capture_output=True, text=True, check=True
            ).stdout
        )

        down = localkube("down", "--state-dir", str(state_dir))
        assert down.returncode == 0, down.stdout + down.stderr
        assert "node cleanup" not in down.stdout, down.stdout
        assert not hostnet.link_exists(plan.bridge)
        assert not nodenet.netns_exists(plan.netns(1))
        dump = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
        dump += subprocess.run(
            ["iptables-save", "-t", "mangle"], capture_output=True, text=True, check=True
        ).stdout
        assert f"LOCALKUBE{slot}-" not in dump
        assert netplan.holder(slot) is None
        assert not state_dir.exists()
    finally:
        nodenet.teardown(plan, 1)
        netplan.release_slot(plan, state_dir)
