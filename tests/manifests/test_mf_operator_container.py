"""The operator container of manifests/deploy starts as specified and answers its probes.

Static: the probes, the metrics Service and the container ports agree with the settings the
container's environment gives the operator. Live: ``queuejob`` is run with the container's own
args and env (Secrets resolved as the kubelet would) as a local process against the session's
cluster, with four changes that keep it from disturbing other tests: it watches one fresh
namespace instead of all, keeps its leader-election Lease there, binds loopback ports chosen
free, and uses the test Redis. It must become healthy on its liveness path, win the Lease
(``queuejob_leader`` 1) and serve its metrics; then it is stopped with SIGTERM and must exit
cleanly, releasing the Lease.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mf_support import container_env, http_get, operator_container, render_deploy

from localkube.process import free_port
from localkube.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_probes_and_metrics_service_match_the_settings(cluster: Any) -> None:
    docs = render_deploy(cluster)
    container = operator_container(docs)
    env = container_env(container, {"redis-auth/password": "x"})
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    liveness = urlsplit(env["QUEUEJOB_LIVENESS"])
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == liveness.path
        assert ports[get["port"]] == liveness.port
    assert ports["metrics"] == int(env["QUEUEJOB_METRICS_PORT"])
    (service,) = [d for d in docs if d["metadata"]["name"] == "queuejob-operator-metrics"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert container["args"][0] == "operator"
    assert "QUEUEJOB_REDIS_PASSWORD" in env and ":@" not in env["QUEUEJOB_REDIS_URL"]


def test_operator_container_becomes_healthy(
    cluster: Any, crds: None, namespace: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    container = operator_container(render_deploy(cluster))
    redis_server.start()
    env = container_env(container, {"redis-auth/password": redis_server.password or ""})
    health_port, metrics_port = free_port(), free_port()
    env.update(
        QUEUEJOB_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        QUEUEJOB_LIVENESS=f"http://127.0.0.1:{health_port}/healthz",
        QUEUEJOB_METRICS_ADDRESS="127.0.0.1",
        QUEUEJOB_METRICS_PORT=str(metrics_port),
        QUEUEJOB_LEADER_ELECTION_NAMESPACE=namespace,
    )
    args = [a for a in container["args"] if a not in ("-A", "--all-namespaces")]
    assert args != container["args"], "the Deployment should watch all namespaces"
    args += ["--namespace", namespace]
    log = tmp_path / "operator.log"
    exe = Path(sys.executable).parent / "queuejob"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(exe), *args],
            env={**os.environ, **env, "KUBECONFIG": str(cluster.kubeconfig)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            status, _ = http_get(f"http://127.0.0.1:{health_port}/healthz")
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"no healthy /healthz (exit {proc.poll()}):\n{log.read_text()}"
        assert "--leader-elect" in args

        def leading() -> bool:
            status, metrics = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
            return status == 200 and "\nqueuejob_leader 1.0" in metrics

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not leading():
            time.sleep(0.5)
        status, metrics = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200 and "queuejob_handler_concurrency_limit" in metrics
        assert "\nqueuejob_leader 1.0" in metrics, log.read_text()
        lease = cluster.kubectl_json("get", "lease", "queuejob-operator", "-n", namespace)
        assert lease["spec"]["holderIdentity"].startswith(f"{env['POD_NAME']}_"), lease
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    assert code == 0, log.read_text()
    lease = cluster.kubectl_json("get", "lease", "queuejob-operator", "-n", namespace)
    assert not lease["spec"].get("holderIdentity"), f"not released: {lease['spec']}"
