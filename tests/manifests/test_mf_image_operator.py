"""The operator image, run as manifests/deploy runs it, takes a QueueJob to Succeeded.

On a private control plane (mf_private: the Deployment's ``--all-namespaces`` would meet the
session's operator on the shared one), queuejob:dev is started by Docker with the operator
container's exact args and env, its pod's and container's securityContext as Docker flags
(uid 10001, read-only root, no capabilities, no privilege escalation), its ``/tmp`` emptyDir as
a tmpfs, and the ServiceAccount's token in a mounted kubeconfig. Three settings differ, as in
the other live tests: the Redis URL (the test's redis-server), and the probe and metrics ports
(free loopback ports; the container shares the host's network, so it reaches the API server and
Redis on 127.0.0.1 and nothing else). It must answer /healthz and /metrics, take a QueueJob to
Succeeded with the node's worker pods, and stop cleanly on ``docker stop`` (SIGTERM).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mf_docker import Images, docker, security_flags, volume_flags
from mf_private import AsCluster, Kubectl, private_cluster, service_account_kubeconfig, wait
from mf_support import container_env, deployment_pod, http_get, operator_container, render_deploy

from localkube.process import free_port
from localkube.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

NS = "image-live"


@pytest.fixture(scope="module")
def private() -> Iterator[Kubectl]:
    with private_cluster() as kubectl:
        yield kubectl


def test_operator_image_reconciles_a_queuejob(
    images: Images, private: Kubectl, tmp_path: Path
) -> None:
    kubectl = private
    docs = render_deploy(AsCluster(kubectl))
    pod_spec = deployment_pod(docs, "queuejob-operator")
    container = operator_container(docs)
    assert container["image"] == images.queuejob

    kubeconfig = service_account_kubeconfig(kubectl, tmp_path / "kubeconfig")
    kubeconfig.chmod(0o644)  # read by uid 10001 in the container; a 1 h token of a private cluster
    server = RedisServer()
    server.start()
    health_port, metrics_port = free_port(), free_port()
    env = container_env(container, {"redis-auth/password": server.password or ""})
    env.update(
        QUEUEJOB_REDIS_URL=f"redis://127.0.0.1:{server.port}/0",
        QUEUEJOB_LIVENESS=f"http://127.0.0.1:{health_port}/healthz",
        QUEUEJOB_METRICS_ADDRESS="127.0.0.1",
        QUEUEJOB_METRICS_PORT=str(metrics_port),
        QUEUEJOB_STATUS_INTERVAL="1",
        KUBECONFIG="/var/run/queuejob/kubeconfig",
    )
    name = f"qj-operator-{uuid.uuid4().hex[:8]}"
    env_flags = [flag for key, value in env.items() for flag in ("--env", f"{key}={value}")]
    docker(
        "run", "--detach", "--name", name, "--network", "host",
        *security_flags(pod_spec, container), *volume_flags(pod_spec, container),
        "--volume", f"{kubeconfig}:/var/run/queuejob/kubeconfig:ro",
        *env_flags, container["image"], *container["args"],
    )  # fmt: skip

    def logs() -> str:
        result = docker("logs", name, check=False)
        return result.stdout + result.stderr

    try:
        wait(
            lambda: http_get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200,
            120,
            "/healthz",
            logs,
        )
        status, metrics = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200 and "queuejob_handler_concurrency_limit" in metrics, metrics[:2000]

        kubectl("create", "namespace", NS)
        kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
        queuejob = {
            "apiVersion": "workqueue.example.com/v1alpha1",
            "kind": "QueueJob",
            "metadata": {"name": "from-image", "namespace": NS},
            "spec": {
                "items": [f"item-{i}" for i in range(8)],
                "parallelism": 2,
                "worker": {"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"}]},
            },
        }
        kubectl("apply", "-f", "-", input=json.dumps(queuejob))

        def finished() -> str | None:
            status = kubectl.json("get", "queuejob", "from-image", "-n", NS).get("status", {})
            return status.get("phase") if status.get("phase") in ("Succeeded", "Failed") else None

        assert wait(finished, 240, "the QueueJob to finish", logs) == "Succeeded"
        status = kubectl.json("get", "queuejob", "from-image", "-n", NS)["status"]
        assert status["counts"]["succeeded"] == 8, status
        pods = kubectl.json(
            "get", "pods", "-n", NS, "-l", "workqueue.example.com/queuejob=from-image"
        )
        assert pods["items"], "no worker pods"

        kubectl("delete", "queuejob", "from-image", "-n", NS, "--wait=false")
        wait(
            lambda: (
                not kubectl("get", "queuejob", "from-image", "-n", NS, "--ignore-not-found").strip()
            ),
            90,
            "the finalizer to be removed",
            logs,
        )
        docker("stop", "--time", "30", name, timeout=60)
        state = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert state == "0", f"exit {state} after SIGTERM:\n{logs()[-4000:]}"
        text = logs()
        for word in ("Forbidden", "forbidden", "Read-only file system", "Permission denied"):
            assert word not in text, f"{word!r} in the operator's log:\n{text[-4000:]}"
    finally:
        docker("rm", "--force", name, check=False)
        server.close()
