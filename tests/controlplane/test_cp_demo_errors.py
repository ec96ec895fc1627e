"""``python -m queuejob_demo --kubeconfig`` without a reachable cluster: a hint, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localkube.process import free_port


def _demo(kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queuejob_demo", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", ["missing", "garbage", "nobody-listening"])
def test_demo_without_a_cluster_says_what_to_do(case: str, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if case == "garbage":
        kubeconfig.write_text("clusters: [\n")
    elif case == "nobody-listening":
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{free_port()}'}}}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
        )
    result = _demo(kubeconfig)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "make cluster-up" in result.stderr and str(kubeconfig) in result.stderr, result.stderr
