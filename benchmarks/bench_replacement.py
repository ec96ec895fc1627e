"""How long does a deleted worker pod take to be replaced? (a measurement, it asserts nothing)

``.venv/bin/python benchmarks/bench_replacement.py`` starts a fresh local control plane (its
controller-manager at ``--v=2``, so the Job controller logs each delayed sync), a
password-protected ``redis-server`` and the operator, applies one QueueJob (4 workers, items
that take 1 s each) and, once 4 workers run, deletes worker pods like a user or a node drain
would (``kubectl delete pod``, default grace period), in rounds:

1. one pod, 2. one pod, 3. three pods at once.

For each round it prints the seconds from the deletion to the moment 4 worker pods are Running
again (polled every 0.2 s), the Job's ``status.failed``, and the Job controller's
``enqueueing job ... delay`` lines for the Job logged in that round (the pod-failure backoff).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from localkube import paths
from localkube.cluster import LocalCluster
from localkube.redis_server import RedisServer
from queuejob import naming
from queuejob_demo.stack import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-replacement"
NAME = "replace"
WORKERS = 4
ROUNDS = (1, 1, 3)


def kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None) -> str:
    argv = [str(paths.kubectl_binary()), f"--kubeconfig={cluster.kubeconfig}", *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {args[:3]}: {done.stderr.strip()}")
    return done.stdout


def worker_pods(cluster: LocalCluster) -> list[dict[str, Any]]:
    out = kubectl(
        cluster,
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        f"{naming.QUEUEJOB_LABEL}={NAME}",
        "-o",
        "json",
    )
    return list(json.loads(out)["items"])


def running(pods: list[dict[str, Any]]) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def wait_running(cluster: LocalCluster, count: int, timeout: float = 900) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if len(running(worker_pods(cluster))) >= count:
            return time.monotonic() - start
        time.sleep(0.2)
    raise TimeoutError(f"{count} running worker pods not seen in {timeout:.0f}s")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-replacement-"))
    extra = {"kube-controller-manager": ["--v=2"]}
    with LocalCluster(extra_args=extra) as cluster, RedisServer() as server:
        cm_log = cluster.state_dir / "logs" / "kube-controller-manager.log"
        print(f"controller-manager log: {cm_log}")
        kubectl(cluster, "apply", "-f", str(REPO / "crds"))
        kubectl(
            cluster, "wait", "--for=condition=Established", "crd/queuejobs.workqueue.example.com"
        )
        kubectl(cluster, "create", "namespace", NAMESPACE)
        operator = OperatorProcess(
            cluster.kubeconfig,
            redis_url=f"redis://127.0.0.1:{server.port}/0",
            redis_password=server.password,
            log_file=workdir / "operator.log",
            extra_env={"QUEUEJOB_WORKER_IMAGE": "queuejob:dev"},
            extra_args=("--standalone", "--all-namespaces"),
        )
        with operator:
            manifest = {
                "apiVersion": "workqueue.example.com/v1alpha1",
                "kind": "QueueJob",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "spec": {
                    "items": [f"i-{n}" for n in range(10000)],
                    "parallelism": WORKERS,
                    "leaseSeconds": 10,
                    "worker": {"command": ["sleep", "2"]},
                },
            }
            kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(manifest))
            print(f"{WORKERS} workers Running after {wait_running(cluster, WORKERS):.1f}s")
            job = json.loads(
                kubectl(cluster, "get", "job", f"{NAME}-workers", "-n", NAMESPACE, "-o", "json")
            )
            print(
                f"Job spec: podFailurePolicy={job['spec'].get('podFailurePolicy')} "
                f"podReplacementPolicy={job['spec'].get('podReplacementPolicy')} "
                f"backoffLimit={job['spec'].get('backoffLimit')}"
            )
            for number, count in enumerate(ROUNDS, 1):
                time.sleep(3)
                offset = cm_log.stat().st_size
                victims = running(worker_pods(cluster))[:count]
                started = time.monotonic()
                kubectl(cluster, "delete", "pod", "-n", NAMESPACE, "--wait=false", *victims)
                took = wait_running(cluster, WORKERS)
                job = json.loads(
                    kubectl(cluster, "get", "job", f"{NAME}-workers", "-n", NAMESPACE, "-o", "json")
                )
                with cm_log.open() as log:
                    log.seek(offset)
                    delays = [
                        m.group(1)
                        for line in log
                        if f"{NAMESPACE}/{NAME}-workers" in line
                        for m in [re.search(r'delay="([^"]+)"', line)]
                        if m and m.group(1) not in ("0s", "1s")
                    ]
                print(
                    f"round {number}: {count} pod(s) deleted -> {WORKERS} Running again after "
                    f"{took:.1f}s (since the delete request: {time.monotonic() - started:.1f}s); "
                    f"Job status.failed={job['status'].get('failed', 0)}; "
                    f"controller delays logged: {', '.join(delays) or 'none'}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
