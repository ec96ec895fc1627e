"""Where the node agent writes container logs: one file per container of each pod.

Layout: ``<state_dir>/pods/<namespace>/<pod>/<container>.log``. The file is truncated when a new
pod (new uid) of that name starts and appended to when the container restarts, so it always holds
every run of the current pod's container. The files stay after the pod is deleted, until the
cluster's state directory is removed.
"""

from __future__ import annotations

from pathlib import Path


def pod_log_path(state_dir: Path, namespace: str, pod: str, container: str) -> Path:
    """The log file of ``container`` in ``namespace/pod``."""
    return state_dir / "pods" / namespace / pod / f"{container}.log"


def pod_log_dir(state_dir: Path, namespace: str, pod: str) -> Path:
    """The directory holding the logs (and the working directory) of ``namespace/pod``."""
    return state_dir / "pods" / namespace / pod
