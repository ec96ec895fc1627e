"""The launcher itself: a component dying is reported by name with its log; down leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.cluster import wait_for
from localkube import ComponentDied, LocalCluster, paths
from localkube.cluster import remove_abandoned_temp_dirs
from localkube.process import alive, marked_pids
from localkube.state import ClusterState

pytestmark = pytest.mark.timeout(240)


def localkube(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localkube", *args],
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
        env=env,
    )


def test_cp_launcher_reports_dead_component_and_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "cluster"
    up = localkube("up", "--state-dir", str(state_dir))
    assert up.returncode == 0, up.stdout + up.stderr
    assert "up in" in up.stdout
    state = ClusterState.load(state_dir)
    assert state is not None and state.phase == "ready"
    assert set(state.components) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "node-agent",
    }
    status = localkube("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout
    assert "total" in status.stdout and "MiB" in status.stdout

    env_lines = localkube("env", "--state-dir", str(state_dir)).stdout
    assert f"export PATH={paths.kubectl_binary().parent}:" in env_lines
    assert f"export KUBECONFIG={state_dir / 'kubeconfig'}" in env_lines
    shell = subprocess.run(
        ["bash", "-c", f"{env_lines}\ncommand -v kubectl && kubectl get nodes --no-headers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shell.returncode == 0, shell.stderr
    kubectl_path, node_line = shell.stdout.splitlines()[:2]
    assert kubectl_path == str(paths.kubectl_binary()), "this repo's kubectl must come first"
    assert node_line.split()[:2] == ["localkube-node", "Ready"]

    os.kill(state.components["kube-scheduler"], signal.SIGKILL)
    failed = wait_for(
        "the scheduler's death in `status`",
        lambda: (
            (r := localkube("status", "--state-dir", str(state_dir))).returncode == 1
            and "was killed by signal SIGKILL" in r.stdout
            and r
        ),
    )
    assert "kube-scheduler" in failed.stdout
    assert "kube-scheduler.log" in failed.stdout  # log tail is quoted

    down = localkube("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not state_dir.exists()
    assert marked_pids(state.cluster_id) == []
    assert not any(alive(pid) for pid in [state.supervisor_pid, *state.components.values()])


def test_cp_launcher_start_failure_names_component_and_cleans_up(tmp_path: Path) -> None:
    real = paths.require_binary()
    fake = tmp_path / "kube-local"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = kube-apiserver ]; then\n'
        '  echo "apiserver: simulated crash at start"; exit 7\n'
        "fi\n"
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    cluster = LocalCluster(binary=fake, node_agent=False)
    with pytest.raises(ComponentDied) as raised:
        cluster.start()
    message = str(raised.value)
    assert "kube-apiserver" in message
    assert "exited with code 7" in message
    assert "simulated crash at start" in message
    assert not cluster.state_dir.exists(), "the temporary state directory must be removed"
    assert marked_pids(cluster.cluster_id) == []


def test_cp_killed_owner_leaves_no_process_and_its_dir_is_reclaimed() -> None:
    script = (
        "import os, sys\n"
        "from localkube import LocalCluster\n"
        "c = LocalCluster(node_agent=False)\n"
        "c.start()\n"
        "print(c.state_dir, c.cluster_id, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    owner = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=200, check=False
    )
    assert owner.returncode == -signal.SIGKILL, owner.stderr
    state_dir, cluster_id = owner.stdout.split()
    wait_for("components to die with their owner", lambda: marked_pids(cluster_id) == [])
    assert Path(state_dir).exists()
    assert Path(state_dir) in remove_abandoned_temp_dirs()
    assert not Path(state_dir).exists()
