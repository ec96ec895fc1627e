"""The detached owner of a CLI cluster: runs :class:`LocalCluster` until SIGTERM.

``localkube up`` starts ``python -m localkube supervise --state-dir D`` in its own session; the
supervisor is the parent of every component (so it reaps them), records progress and failures in
``D/localkube.json`` and its own log ``D/logs/localkube.log``, and on SIGTERM/SIGINT stops the
cluster cleanly (the state directory itself is removed by ``localkube down``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from localkube.cluster import LocalCluster, NodeKind
from localkube.process import MARKER_ENV
from localkube.state import ClusterState


def supervise(state_dir: Path, node: NodeKind = "agent", nodes: int = 0) -> int:
    """Run the cluster in ``state_dir`` until signalled; exit 1 if it could not start."""
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def progress(message: str) -> None:
        print(f"localkube: {message}", flush=True)

    state = ClusterState(
        supervisor_pid=os.getpid(),
        cluster_id=os.environ[MARKER_ENV],
        node="kubelet" if nodes else node,
        nodes=nodes,
    )

    def on_failure(message: str) -> None:
        print(message, flush=True)
        state.failures.append(message)
        state.save(state_dir)

    cluster = LocalCluster(
        state_dir,
        node="kubelet" if nodes else node,
        nodes=nodes,
        progress=progress,
        on_failure=on_failure,
    )
    cluster.cluster_id = state.cluster_id
    state.save(state_dir)
    try:
        cluster.start()
    except Exception as exc:
        state.phase, state.message = "failed", f"{type(exc).__name__}: {exc}"
        state.save(state_dir)
        print(f"localkube: start failed: {state.message}", flush=True)
        return 1
    state.phase = "ready"
    state.kubeconfig = str(cluster.kubeconfig)
    state.server = cluster.server
    state.startup_seconds = cluster.startup_seconds
    state.components = cluster.pids()
    state.logs = {c.name: str(c.log) for c in cluster.components}
    state.save(state_dir)
    while not done.wait(0.5):
        pass
    print("localkube: stopping", flush=True)
    cluster.stop()
    state.phase = "stopped"
    state.save(state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
