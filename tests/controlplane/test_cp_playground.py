"""The playground (``make dev-up`` / ``dev-env`` / ``dev-down``): one command brings up the
control plane, Redis and the operator in the background; a QueueJob applied with the printed
environment succeeds; a second ``up`` starts nothing; ``down`` leaves no process and no file.

The Makefile targets run ``python -m queuejob_demo.playground up|env|down --dir DEV_DIR``; the
test runs that module directly (``make dev-up`` first re-runs ``make install``) in a temporary
directory, so it never meets a playground a developer keeps in this checkout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.cluster import wait_for
from localkube.process import alive, marked_pids
from localkube.state import ClusterState
from queuejob_demo.playground import PlaygroundState

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]


def playground(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queuejob_demo.playground", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )


def shell(env_lines: str, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in bash after ``eval`` of the playground's env lines (a user's shell)."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{env_lines}\n{script}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


def test_cp_playground_up_runs_a_queuejob_and_down_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "dev"
    cluster_id = ""
    state: PlaygroundState | None = None
    try:
        up = playground("up", "--dir", str(root))
        assert up.returncode == 0, up.stdout + up.stderr
        assert "export KUBECONFIG=" in up.stdout and "make dev-down" in up.stdout, up.stdout
        state = PlaygroundState.load(root)
        cluster = ClusterState.load(root / "cluster")
        assert state is not None and state.phase == "ready" and state.running(), state
        assert cluster is not None and cluster.phase == "ready"
        cluster_id = cluster.cluster_id
        for log in ("operator.log", "redis.log", "playground.log"):
            assert (root / "logs" / log).is_file(), log
        password = (root / "redis-password").read_text().strip()
        assert (root / "redis-password").stat().st_mode & 0o077 == 0
        cmdline = Path(f"/proc/{state.redis_pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline, "the Redis password is on a command line"

        again = playground("up", "--dir", str(root))
        assert again.returncode == 0 and "already up" in again.stdout, again.stdout
        assert PlaygroundState.load(root) == state, "a second up must start nothing"

        env_lines = playground("env", "--dir", str(root)).stdout
        assert f"127.0.0.1:{state.redis_port}" in env_lines
        applied = shell(
            env_lines,
            "command -v kubectl kubectl-queuejob\nkubectl apply -f manifests/examples/minimal.yaml",
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr
        kubectl, plugin = applied.stdout.splitlines()[:2]
        assert kubectl == str(REPO / ".build" / "bin" / "kubectl")
        assert Path(plugin).parent == Path(sys.executable).parent

        def phase() -> str | None:
            out = shell(env_lines, "kubectl get qj minimal -o jsonpath='{.status.phase}'")
            return out.stdout if out.stdout in ("Succeeded", "Failed") else None

        assert wait_for("QueueJob minimal to finish", phase, timeout=240) == "Succeeded"
        status = shell(env_lines, "kubectl queuejob status minimal")
        assert status.returncode == 0 and "5/5" in status.stdout, status.stdout + status.stderr
        healthy = playground("status", "--dir", str(root))
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr

        # A killed supervisor (a crash): its operator dies with it, its Redis does not; the
        # next `up` stops what is left and starts a new playground.
        os.kill(state.supervisor_pid, signal.SIGKILL)
        wait_for("the operator to die with its supervisor", lambda: not alive(state.operator_pid))
        old = state
        restarted = playground("up", "--dir", str(root))
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        state = PlaygroundState.load(root)
        assert state is not None and state.running() and state.supervisor_pid != old.supervisor_pid
        assert not old.redis_running(), "the crashed playground's Redis is still running"
        cluster = ClusterState.load(root / "cluster")
        assert cluster is not None
        cluster_id = cluster.cluster_id
    finally:
        down = playground("down", "--dir", str(root))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not root.exists()
    assert state is not None and marked_pids(state.marker) == []
    assert not state.redis_running() and not alive(state.operator_pid)
    assert cluster_id and marked_pids(cluster_id) == []
    again = playground("down", "--dir", str(root))
    assert again.returncode == 0 and "not running" in again.stdout
