"""The docs task "Fine Parallel Processing Using a Work Queue", run with manifests/fine-parallel.

The manifests are applied as the README says (Secret, fill-queue Job, then job-wq-2 with
parallelism 2 and completions unset) and the Job must complete with every fruit processed once.

On the local backend the node agent runs the queuejob pods as local processes but cannot run the
Redis image, so the pods are pointed at the session's loopback ``redis-server`` (same password
mechanism: Secret ``redis-auth``), and the docs' 10 s of work per item is shortened. On kind or an
existing cluster the Redis pod and Service are applied too and the manifests run unchanged except
for the shorter work.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
import redis
from mf_support import REPO, load_docs, restrict

from localkube.redis_server import RedisServer

FRUITS = {"apple", "banana", "cherry", "date", "fig", "grape", "lemon", "melon", "orange"}
DIR = REPO / "manifests" / "fine-parallel"
DB = 7  # a database of the shared test Redis that no other test uses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _job(name: str, env: dict[str, str]) -> dict[str, Any]:
    (job,) = [d for d in load_docs((DIR / name).read_text()) if d["kind"] == "Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    by_name = {e["name"]: e for e in container.get("env", [])}
    for key, value in env.items():
        by_name[key] = {"name": key, "value": value}
    container["env"] = list(by_name.values())
    return job


def _docs_cleanup() -> str:
    """The shell block of docs/docs-task.md that deletes the queue's keys from a Redis outside
    the cluster."""
    text = (REPO / "docs" / "docs-task.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    [block] = [b for b in blocks if "--scan --pattern 'wq:{job2}:*'" in b]
    return str(block)


def _wait_complete(cluster: Any, namespace: str, job: str, timeout: int) -> None:
    result = cluster.kubectl(
        "wait",
        "--for=condition=Complete",
        f"job/{job}",
        "-n",
        namespace,
        f"--timeout={timeout}s",
        check=False,
        timeout=timeout + 30,
    )
    if result.returncode != 0:
        pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        status = cluster.kubectl("get", "job", job, "-n", namespace, "-o", "yaml").stdout
        pytest.fail(f"job {job} did not complete: {result.stderr}\n{pods}\n{status}")


def test_docs_task_runs_to_completion(
    cluster: Any, namespace: str, redis_server: RedisServer
) -> None:
    restrict(cluster, namespace)
    env = {"QUEUEJOB_DEMO_WORK_SECONDS": "0.2"}
    if cluster.local_processes:
        redis_server.start()
        password = redis_server.password or ""
        env["QUEUEJOB_REDIS_URL"] = f"redis://127.0.0.1:{redis_server.port}/{DB}"
    else:
        password = "fine-parallel-test-password"
        cluster.kubectl("apply", "-n", namespace, "-f", str(DIR / "redis-pod.yaml"))
        cluster.kubectl("apply", "-n", namespace, "-f", str(DIR / "redis-service.yaml"))
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "redis-auth",
        "-n",
        namespace,
        f"--from-literal=password={password}",
    )
    if not cluster.local_processes:
        cluster.kubectl(
            "wait",
            "--for=condition=Ready",
            "pod/redis-master",
            "-n",
            namespace,
            "--timeout=180s",
            timeout=210,
        )

    fill = _job("fill-queue-job.yaml", env)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(fill))
    _wait_complete(cluster, namespace, "fill-queue", 120)

    work = _job("job.yaml", env)
    assert work["spec"]["parallelism"] == 2 and "completions" not in work["spec"]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(work))
    _wait_complete(cluster, namespace, "job-wq-2", 240)

    status = cluster.kubectl_json("get", "job", "job-wq-2", "-n", namespace)["status"]
    assert status.get("succeeded", 0) >= 1
    assert status.get("failed", 0) == 0

    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app=job-wq-2")["items"]
    assert len(pods) >= 2, "parallelism 2 should have started two worker pods"
    if cluster.local_processes:
        logs = "".join(cluster.pod_logs(namespace, pod["metadata"]["name"]) for pod in pods)
        for fruit in FRUITS:
            assert f"item '{fruit}' done" in logs, logs
        assert logs.count("queue done") == len(pods), logs
        # The walkthrough's clean-up of a Redis outside the cluster (docs/docs-task.md), run as
        # written: every key the task created in its database must be gone afterwards.
        client = redis.Redis(host="127.0.0.1", port=redis_server.port, db=DB, password=password)
        try:
            keys = list(client.scan_iter(match="*"))
            assert keys and all(k.startswith(b"wq:{job2}:") for k in keys), keys
            cleanup = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", _docs_cleanup()],
                env={
                    **os.environ,
                    "QUEUEJOB_REDIS_URL": env["QUEUEJOB_REDIS_URL"],
                    "QUEUEJOB_REDIS_PASSWORD": password,
                },
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert cleanup.returncode == 0, cleanup.stderr
            assert list(client.scan_iter(match="*")) == [], "the docs' clean-up left keys behind"
        finally:
            client.close()


def test_same_work_as_one_queuejob(cluster: Any, operator: Any, namespace: str) -> None:
    # manifests/fine-parallel/queuejob.yaml, with 0.1 s instead of the docs' 10 s per item.
    (qj,) = load_docs((DIR / "queuejob.yaml").read_text())
    qj["metadata"]["namespace"] = namespace
    (env,) = qj["spec"]["worker"]["env"]
    assert env["name"] == "QUEUEJOB_DEMO_WORK_SECONDS"
    env["value"] = "0.1"
    operator.apply(qj)
    done = operator.wait_phase(namespace, "job-wq-2", ("Succeeded", "Failed"), timeout=180)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["counts"]["succeeded"] == len(FRUITS) and status["counts"]["failed"] == 0
    assert status["jobName"] == "job-wq-2-workers"
    job = cluster.kubectl_json("get", "job", "job-wq-2-workers", "-n", namespace)
    # Unlike the docs' Job (completions unset): Indexed, one index per worker (README).
    spec = job["spec"]
    assert (spec["completionMode"], spec["parallelism"], spec["completions"]) == ("Indexed", 2, 2)
