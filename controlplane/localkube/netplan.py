"""Addresses of a multi-node cluster (``--nodes=N``), one free /16 "slot" per run.

Each run of a multi-node cluster owns one slot ``S`` (0 to :data:`SLOTS` - 1), i.e. the range
``10.(176+S).0.0/16`` (10.176/16 to 10.207/16: not Docker's, not kind's, not the host-network
real node's 10.213-215, not the node agent's 10.0.0.0/24). Inside it:

- node ``i`` (1..N) gets the pod range ``10.(176+S).i.0/24`` (its Node's ``spec.podCIDR``);
- Services: ``10.(176+S).200.0/24``; the ``kubernetes`` Service is ``.1``, cluster DNS ``.10``;
- the link network ``10.(176+S).255.0/24``: the run's bridge on the host has ``.1``, where the
  API server binds, and node ``i`` has ``.(10+i)`` inside its own network namespace.

Guarantees:

- :func:`claim_slot` hands out the lowest slot no live run holds, under an exclusive ``flock``
  on :data:`LOCK_FILE`; the owner record (pid + start time + state dir) lives in
  :data:`SLOT_DIR` until :func:`release_slot`. A slot whose owner died is handed out again, with
  the dead owner's state dir returned so its leftovers are removed first;
- two runs on one host never share an address, a link name, a network namespace name or an
  iptables chain name: every name carries the slot number.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from localkube.process import alive, start_time

SLOTS = 32
FIRST_OCTET = 176
SLOT_DIR = Path("/run/localkube/slots")
LOCK_FILE = SLOT_DIR / "lock"


class NoFreeSlot(RuntimeError):
    """Every slot is held by a live run."""


@dataclass(frozen=True)
class NetPlan:
    """The addresses and names of slot :attr:`slot` (see the module doc)."""

    slot: int

    @property
    def prefix(self) -> str:
        return f"10.{FIRST_OCTET + self.slot}"

    @property
    def run_cidr(self) -> str:
        """Everything of this run: pods, Services, the link network."""
        return f"{self.prefix}.0.0/16"

    @property
    def cluster_cidr(self) -> str:
        """The pod range of the whole cluster (the nodes' /24s are inside it)."""
        return f"{self.prefix}.0.0/17"

    def pod_cidr(self, index: int) -> str:
        return f"{self.prefix}.{index}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"{self.prefix}.200.0/24"

    @property
    def service_ip(self) -> str:
        return f"{self.prefix}.200.1"

    @property
    def dns_ip(self) -> str:
        return f"{self.prefix}.200.10"

    @property
    def link_cidr(self) -> str:
        return f"{self.prefix}.255.0/24"

    @property
    def api_ip(self) -> str:
        """The host's address on the run's bridge: the API server binds and advertises it."""
        return f"{self.prefix}.255.1"

    def node_ip(self, index: int) -> str:
        return f"{self.prefix}.255.{10 + index}"

    @property
    def bridge(self) -> str:
        """The run's bridge on the host, joining the nodes' network namespaces."""
        return f"lkb{self.slot}"

    def netns(self, index: int) -> str:
        return f"lk{self.slot}-n{index}"

    def veth(self, index: int) -> str:
        """Host end of node ``index``'s veth pair (the node's end is ``eth0`` in its netns)."""
        return f"lk{self.slot}n{index}"

    @property
    def egress_chain(self) -> str:
        return f"LOCALKUBE{self.slot}-EGRESS"

    @property
    def forward_chain(self) -> str:
        return f"LOCALKUBE{self.slot}-FORWARD"

    def cgroup_root(self, index: int) -> str:
        """The kubelet's ``cgroupRoot`` for node ``index`` (its pods go below it)."""
        return f"/localkube{self.slot}-n{index}"

    def check(self, nodes: int) -> None:
        if not 1 <= nodes <= 100:
            raise ValueError(f"nodes: {nodes} is out of range (1 to 100)")
        ipaddress.ip_network(self.run_cidr)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    SLOT_DIR.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _record(slot: int) -> Path:
    return SLOT_DIR / f"{slot}.json"


def holder(slot: int) -> dict[str, str] | None:
    """The owner record of ``slot``, or None."""
    try:
        data = json.loads(_record(slot).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def holder_alive(record: dict[str, str]) -> bool:
    pid = int(record.get("pid", "0"))
    return pid > 0 and alive(pid) and start_time(pid) == record.get("start_time")


def claim_slot(state_dir: Path) -> tuple[NetPlan, Path | None]:
    """A free slot for this process (see the module doc) and the state dir of a dead previous
    holder of that slot (its leftovers must be removed before use), or None."""
    with _locked():
        for slot in range(SLOTS):
            record = holder(slot)
            if record is None:
                chosen, stale = slot, None
                break
            if not holder_alive(record):
                chosen, stale = slot, Path(record.get("state_dir", "/nonexistent"))
                break
        else:
            raise NoFreeSlot(f"all {SLOTS} multi-node slots are held by live runs")
        pid = os.getpid()
        _record(chosen).write_text(
            json.dumps(
                {"pid": str(pid), "start_time": start_time(pid), "state_dir": str(state_dir)}
            )
        )
        return NetPlan(chosen), stale


def release_slot(plan: NetPlan, state_dir: Path) -> None:
    """Give the slot back (only if ``state_dir``'s run still holds it)."""
    with _locked():
        record = holder(plan.slot)
        if record is not None and record.get("state_dir") == str(state_dir):
            _record(plan.slot).unlink(missing_ok=True)


def live_slots() -> list[int]:
    """Slots held by live runs (this one included)."""
    return [s for s in range(SLOTS) if (r := holder(s)) is not None and holder_alive(r)]
