"""The CLI's record of a detached cluster: ``<state_dir>/localkube.json``.

Written by the supervisor process (``python -m localkube supervise``) that owns the components;
read by ``up`` (to wait for readiness), ``status`` and ``down``. Writes are atomic (rename).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "localkube.json"


@dataclass
class ClusterState:
    supervisor_pid: int
    cluster_id: str
    phase: str = "starting"  # starting | ready | failed | stopped
    message: str = ""
    kubeconfig: str = ""
    server: str = ""
    startup_seconds: float | None = None
    components: dict[str, int] = field(default_factory=dict)  # name -> pid
    logs: dict[str, str] = field(default_factory=dict)  # name -> log path
    failures: list[str] = field(default_factory=list)
    node: str = "agent"  # agent | kubelet | none (what runs pods)
    nodes: int = 0  # N real nodes in network namespaces of their own (0: one node as `node` says)

    def save(self, state_dir: Path) -> None:
        tmp = state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState | None:
        try:
            data = json.loads((state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(**data)
