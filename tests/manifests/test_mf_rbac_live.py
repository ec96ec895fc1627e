"""The operator works with nothing but its ServiceAccount's RBAC, on a private control plane.

``kubectl auth can-i`` (test_mf_rbac.py) checks the matrix; this test checks that the matrix is
enough. A second, private local control plane is started for this module (so no other operator
sees its objects), manifests/deploy is applied to it, and ``queuejob`` runs with the Deployment's
own args (``--standalone --all-namespaces --leader-elect``) and env, authenticated by a token of
ServiceAccount queuejob-operator. It must first win the leader-election Lease in queuejob-system
(create, get, update on the Role's Lease), then take a QueueJob through every API path of the
operator: items from a
ConfigMap, created suspended (Job created suspended), resumed (Job patched), Succeeded (status
patches, Secret for the workers, events), given an item by an add request (ConfigMap read, Job
deleted and re-created), and deleted (finalizer removed after cleanup). On
SIGTERM it must release the Lease (an update) and exit 0. The operator's log must not mention a
forbidden request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mf_private import AsCluster, Kubectl, private_cluster, service_account_kubeconfig, wait
from mf_support import DEPLOY_NS, POD_FIELDS, container_env, operator_container, render_deploy

from localkube import paths
from localkube.process import free_port
from localkube.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

NS = "rbac-live"


@pytest.fixture(scope="module")
def private() -> Iterator[Kubectl]:
    with private_cluster() as kubectl:
        yield kubectl


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _holder(kubectl: Kubectl) -> str:
    """The holder of the operator's Lease ("" if released or absent)."""
    out = kubectl("get", "lease", "queuejob-operator", "-n", DEPLOY_NS, "-o", "json", check=False)
    return str(json.loads(out)["spec"].get("holderIdentity", "")) if out else ""


def test_operator_runs_on_its_rbac_alone(private: Kubectl, tmp_path: Path) -> None:
    kubectl = private
    sa_kubeconfig = service_account_kubeconfig(kubectl, tmp_path / "sa.kubeconfig")
    # The ServiceAccount really is restricted: it cannot list Secrets.
    denied = subprocess.run(
        [str(paths.kubectl_binary()), f"--kubeconfig={sa_kubeconfig}", "get", "secrets", "-A"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr

    container = operator_container(render_deploy(AsCluster(kubectl)))
    server = RedisServer()
    server.start()
    health = f"http://127.0.0.1:{free_port()}/healthz"
    pod = POD_FIELDS["metadata.name"]
    env = container_env(container, {"redis-auth/password": server.password or ""})
    env.update(
        QUEUEJOB_REDIS_URL=f"redis://127.0.0.1:{server.port}/0",
        QUEUEJOB_LIVENESS=health,
        QUEUEJOB_METRICS_ADDRESS="127.0.0.1",
        QUEUEJOB_METRICS_PORT=str(free_port()),
        QUEUEJOB_STATUS_INTERVAL="1",
        KUBECONFIG=str(sa_kubeconfig),
        # A crash (one exit by SIGABRT at shutdown, with nothing logged, was seen once) then
        # leaves every thread's Python stack in the log.
        PYTHONFAULTHANDLER="1",
    )
    base = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    log = tmp_path / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "queuejob"), *container["args"]],
            env={**base, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait(lambda: proc.poll() is not None or _healthy(health), 90, "/healthz", log.read_text)
        assert proc.poll() is None, log.read_text()
        assert "--leader-elect" in container["args"]
        wait(lambda: _holder(kubectl).startswith(f"{pod}_"), 60, "the Lease", log.read_text)

        kubectl("create", "namespace", NS)
        kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
        kubectl(
            "create",
            "configmap",
            "fruit",
            "-n",
            NS,
            "--from-literal=items=apple\nbanana\ncherry\ndate\nfig\ngrape\n",
        )
        qj = {
            "apiVersion": "workqueue.example.com/v1alpha1",
            "kind": "QueueJob",
            "metadata": {"name": "live", "namespace": NS},
            "spec": {
                "itemsFrom": {"configMapKeyRef": {"name": "fruit", "key": "items"}},
                "parallelism": 2,
                "suspend": True,
                "worker": {"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"}]},
            },
        }
        kubectl("apply", "-f", "-", input=json.dumps(qj))

        def job_suspended() -> bool:
            out = kubectl("get", "job", "live-workers", "-n", NS, "-o", "json", check=False)
            return bool(out) and json.loads(out)["spec"].get("suspend") is True

        wait(job_suspended, 90, "the suspended Job", log.read_text)
        kubectl(
            "patch",
            "queuejob",
            "live",
            "-n",
            NS,
            "--type=merge",
            "-p",
            '{"spec":{"suspend":false}}',
        )

        def phase() -> str | None:
            status = kubectl.json("get", "queuejob", "live", "-n", NS).get("status", {})
            return status.get("phase") if status.get("phase") in ("Succeeded", "Failed") else None

        assert wait(phase, 180, "phase Succeeded", log.read_text) == "Succeeded"
        status = kubectl.json("get", "queuejob", "live", "-n", NS)["status"]
        assert status["counts"]["succeeded"] == 6, status

        # An add request (what `kubectl queuejob add` writes) on the finished QueueJob: the
        # operator reads the ConfigMap, reopens the QueueJob, deletes and re-creates its Job.
        kubectl("create", "configmap", "more", "-n", NS, "--from-literal=items=kiwi\n")
        request = json.dumps({"id": "live-add-1", "action": "add", "configMap": "more"})
        kubectl(
            "annotate", "queuejob", "live", "-n", NS, f"workqueue.example.com/request={request}"
        )

        def rerun() -> dict[str, Any] | None:
            status = kubectl.json("get", "queuejob", "live", "-n", NS).get("status", {})
            done = (status.get("counts") or {}).get("succeeded") == 7
            return status if done and status.get("phase") == "Succeeded" else None

        status = wait(rerun, 180, "the added item to succeed", log.read_text)
        assert status["lastRequest"]["result"] == "Succeeded", status["lastRequest"]

        kubectl("delete", "queuejob", "live", "-n", NS, "--wait=false")

        def gone() -> bool:
            out = kubectl("get", "queuejob", "live", "-n", NS, "--ignore-not-found")
            return not out.strip()

        wait(gone, 90, "the QueueJob's finalizer to be removed", log.read_text)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-4000:]
        assert _holder(kubectl) == "", "the Lease was not released on SIGTERM"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        server.close()
    text = log.read_text()
    for word in ("Forbidden", "forbidden", " 403"):
        assert word not in text, f"the operator was refused something:\n{text[-4000:]}"
