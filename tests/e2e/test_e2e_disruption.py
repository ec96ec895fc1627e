"""Worker pods under disruption: deleted workers are replaced without failing the Job; a
SIGKILLed worker counts as a crash and takes its per-item command (and its children) along."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for
from queuejob import naming

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

#: Upper bound for 4 workers to be Running again after 3 of them were deleted at once. Measured
#: on the local control plane (2 shared cores): 41 s, nearly all of it the Job controller's
#: pod-failure backoff (3 failures since the last success: 10 s * 2**2 = 40 s, which Kubernetes
#: applies to failures ignored by the podFailurePolicy too). Generous for a loaded machine; it
#: asserts that replacements come, not how fast.
REPLACED_WITHIN = 120.0


def worker_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"{naming.QUEUEJOB_LABEL}={name}"
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return list(pods)


def running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def job_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    job = cluster.kubectl_json("get", "job", naming.job_name(name), "-n", namespace)
    return dict(job.get("status") or {})


def test_deleted_workers_are_replaced_and_not_counted_as_failures(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    items = [f"d-{i}" for i in range(160)]
    operator.apply(
        queuejob(
            "disrupt", namespace, items=items, parallelism=4, worker={"command": ["sleep", "1"]}
        )
    )
    first = wait_for(
        lambda: len(running(worker_pods(cluster, namespace, "disrupt"))) == 4 or None,
        120,
        "4 worker pods Running",
    )
    assert first
    victims = [p["metadata"]["name"] for p in running(worker_pods(cluster, namespace, "disrupt"))]
    deleted_at = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", namespace, "--wait=false", *victims[:3])

    def four_new_running() -> list[str] | None:
        names = [p["metadata"]["name"] for p in running(worker_pods(cluster, namespace, "disrupt"))]
        return names if len(names) == 4 and not set(names) & set(victims[:3]) else None

    wait_for(four_new_running, REPLACED_WITHIN, f"4 workers Running again ({REPLACED_WITHIN:.0f}s)")
    print(f"4 workers Running again {time.monotonic() - deleted_at:.1f}s after 3 were deleted")

    # The deleted workers stopped gracefully (exit 143): not counted against backoffLimit.
    status = job_status(cluster, namespace, "disrupt")
    assert status.get("failed", 0) == 0, status
    assert not [c for c in status.get("conditions", []) if c["type"] == "Failed"], status

    qj = operator.wait_phase(namespace, "disrupt", ("Succeeded", "Failed"), timeout=180)
    assert qj["status"]["phase"] == "Succeeded", qj["status"]
    assert qj["status"]["counts"]["succeeded"] == len(items)
    assert operator.queue(namespace, "disrupt").succeeded_items() == set(items)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_sigkilled_worker_takes_its_command_and_grandchild_along(
    cluster: Cluster, operator: OperatorHandle, namespace: str, tmp_path: Path
) -> None:
    if not cluster.local_processes:
        pytest.skip("needs worker pods running as local processes (the local backend)")
    pids = tmp_path / "pids"
    pids.mkdir(mode=0o777)
    pids.chmod(0o777)
    # The command records its pid and its background child's pid, then waits for the child.
    script = f"echo $$ > {pids}/cmd; sleep 300 & echo $! > {pids}/child; wait"
    operator.apply(
        queuejob(
            "sigkill",
            namespace,
            items=["only"],
            leaseSeconds=3,
            worker={"command": ["sh", "-c", script]},
        )
    )
    cmd, child = wait_for(
        lambda: (
            (_read_pid(pids / "cmd"), _read_pid(pids / "child"))
            if _read_pid(pids / "cmd") and _read_pid(pids / "child")
            else None
        ),
        120,
        "the item's command and its child to start",
    )
    try:
        [pod] = running(worker_pods(cluster, namespace, "sigkill"))
        [container] = pod["status"]["containerStatuses"]
        worker_pid = int(container["containerID"].removeprefix("localkube://"))
        assert _alive(cmd) and _alive(child)
        os.kill(worker_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(
            lambda: not _alive(cmd) and not _alive(child),
            10,
            "the command and its child to die with the worker",
            interval=0.05,
        )
        gone_after = time.monotonic() - killed_at
        print(f"command and grandchild gone {gone_after:.2f}s after the worker's SIGKILL")
        assert gone_after < 2.0
    finally:
        for pid in (cmd, child):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    # A SIGKILLed worker (exit 137) is a genuine failure: it counts against backoffLimit.
    status = wait_for(
        lambda: job_status(cluster, namespace, "sigkill").get("failed") or None,
        60,
        "the Job to count the killed worker as failed",
    )
    assert status == 1, json.dumps(job_status(cluster, namespace, "sigkill"))
