"""Address slots of multi-node runs (``localkube.netplan``): disjoint ranges and names per run.

Pure Python on a temporary slot directory: no root, no network changes.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from localkube import netplan
from localkube.netplan import NetPlan


@pytest.fixture
def slot_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(netplan, "SLOT_DIR", tmp_path)
    monkeypatch.setattr(netplan, "LOCK_FILE", tmp_path / "lock")
    return tmp_path


def test_cp_netplan_every_address_of_a_run_is_inside_its_own_range() -> None:
    plan = NetPlan(5)
    run = ipaddress.ip_network(plan.run_cidr)
    inside = [plan.api_ip, plan.service_ip, plan.dns_ip, *(plan.node_ip(i) for i in (1, 2, 3))]
    assert all(ipaddress.ip_address(a) in run for a in inside)
    cluster = ipaddress.ip_network(plan.cluster_cidr)
    pods = [ipaddress.ip_network(plan.pod_cidr(i)) for i in (1, 2, 3)]
    assert all(p.subnet_of(cluster) for p in pods)
    assert not any(p.overlaps(q) for p in pods for q in pods if p != q)
    for other in (plan.service_cidr, plan.link_cidr):
        assert not ipaddress.ip_network(other).overlaps(cluster)


def test_cp_netplan_two_slots_share_no_address_or_name() -> None:
    first, second = NetPlan(0), NetPlan(1)
    assert not ipaddress.ip_network(first.run_cidr).overlaps(ipaddress.ip_network(second.run_cidr))
    names = lambda p: {p.bridge, p.netns(1), p.veth(1), p.egress_chain, p.cgroup_root(1)}  # noqa: E731
    assert not names(first) & names(second)
    assert all(len(link) <= 15 for link in (NetPlan(31).bridge, NetPlan(31).veth(99)))  # IFNAMSIZ
    # nothing of the host-network real node's ranges, nor the node agent's Services
    taken = ["10.213.0.0/16", "10.214.0.0/24", "10.215.0.1/32", "10.0.0.0/24"]
    for slot in range(netplan.SLOTS):
        run = ipaddress.ip_network(NetPlan(slot).run_cidr)
        assert not any(run.overlaps(ipaddress.ip_network(t)) for t in taken), run


def test_cp_netplan_live_holders_get_different_slots_and_a_dead_ones_slot_is_reused(
    slot_dir: Path,
) -> None:
    mine, stale = netplan.claim_slot(Path("/state/a"))
    assert (mine.slot, stale) == (0, None)
    # slot 1: a live process (a sleeping child); slot 2: a dead one's record
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from localkube.process import start_time

        live = {"pid": str(child.pid), "start_time": start_time(child.pid), "state_dir": "/b"}
        (slot_dir / "1.json").write_text(json.dumps(live))
        (slot_dir / "0.json").unlink()  # free slot 0 again, keep 1 live
        dead = {"pid": "999999999", "start_time": "1", "state_dir": "/state/dead"}
        (slot_dir / "2.json").write_text(json.dumps(dead))
        again, stale = netplan.claim_slot(Path("/state/c"))
        assert (again.slot, stale) == (0, None)  # a free slot first
        third, stale = netplan.claim_slot(Path("/state/d"))
        assert (third.slot, stale) == (2, Path("/state/dead"))  # the dead holder's, to clean
        assert netplan.live_slots() == [0, 1, 2]
        netplan.release_slot(third, Path("/state/other"))  # not its holder: kept
        assert netplan.holder(2) is not None
        netplan.release_slot(third, Path("/state/d"))
        assert netplan.holder(2) is None
    finally:
        child.kill()
        child.wait()
