"""The worker image drains a queue on a real redis-server, as a restricted pod runs it.

queuejob:dev runs ``worker`` under Docker with the worker container's securityContext as the
operator builds it (queuejob.jobs.build_job: uid 10001, read-only root, all capabilities dropped,
no privilege escalation, /tmp an emptyDir), sharing the host's network to reach the test's
redis-server on 127.0.0.1. Each item runs a per-item command that fails unless it really runs as
uid 10001 with no effective capabilities, so a passing run proves both.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from mf_docker import Images, docker, security_flags, volume_flags

from localkube.redis_server import RedisServer
from queuejob import jobs
from queuejob.spec import parse
from workqueue.redisqueue import LeaseQueue

pytestmark = [pytest.mark.timeout(300)]

CHECK = (
    'test "$(id -u):$(id -g)" = 10001:10001 && grep -Eq "^CapEff:[[:space:]]+0+$" /proc/self/status'
)


def _worker_pod(spec: dict[str, Any]) -> dict[str, Any]:
    body = {"metadata": {"name": "image-worker", "namespace": "ns", "uid": "u"}, "spec": spec}
    job = jobs.build_job(
        body,
        parse(spec),
        queue="q",
        redis_url="redis://127.0.0.1:6379/0",
        default_image="queuejob:dev",
        image_pull_policy="IfNotPresent",
        backoff_limit=6,
    )
    return dict(job["spec"]["template"]["spec"])


def test_worker_image_drains_a_queue(images: Images, redis_server: RedisServer) -> None:
    redis_server.start()
    queue_name = f"image-worker-{uuid.uuid4().hex[:8]}"
    queue = LeaseQueue(redis_server.client(), queue_name)
    items = [f"item-{i}" for i in range(30)]
    assert queue.seed(items) == 30

    pod = _worker_pod({"items": items, "worker": {"command": ["sh", "-c", CHECK]}})
    (container,) = pod["containers"]
    env = {
        "QUEUEJOB_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "QUEUEJOB_REDIS_PASSWORD": redis_server.password or "",
        "QUEUEJOB_QUEUE": queue_name,
        "QUEUEJOB_WORKER_ID": "image-worker-0",
        "QUEUEJOB_ITEM_COMMAND": json.dumps(["sh", "-c", CHECK]),
    }
    env_flags = [flag for key, value in env.items() for flag in ("--env", f"{key}={value}")]
    result = docker(
        "run", "--rm", "--network", "host",
        *security_flags(pod, container), *volume_flags(pod, container),
        *env_flags, images.queuejob, *container["args"],
        timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = queue.stats()
    assert (stats.succeeded, stats.dead, stats.pending) == (30, 0, 0), (stats, queue.dead_letters())
