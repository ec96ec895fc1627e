"""A private local control plane with manifests/deploy applied, and a ServiceAccount kubeconfig.

For tests that run an operator with the Deployment's own args (``--all-namespaces``): on the
session's cluster it would fight the session's operator, so they get a control plane of their
own (about 6 s to start). The Deployments are applied scaled to 0: the test runs the operator
itself (as a local process or a container), with the ServiceAccount's token.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from mf_support import CRD_NAME, DEPLOY_NS, REPO, deploy_stream, render_deploy

from localkube import LocalCluster, paths


class Kubectl:
    """kubectl bound to one kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(paths.kubectl_binary()), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


class AsCluster:
    """Just enough of the ``cluster`` fixture's interface for ``render_deploy``."""

    def __init__(self, kubectl: Kubectl) -> None:
        self._kubectl = kubectl

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, self._kubectl(*args), "")


@contextmanager
def private_cluster() -> Iterator[Kubectl]:
    """A fresh control plane with the CRD and manifests/deploy (Deployments at 0 replicas)."""
    with LocalCluster() as local:
        kubectl = Kubectl(local.kubeconfig)
        kubectl("apply", "-f", str(REPO / "crds"))
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
        docs = render_deploy(AsCluster(kubectl))
        kubectl("apply", "-f", "-", input=deploy_stream(docs, replicas=0))
        yield kubectl


def service_account_kubeconfig(kubectl: Kubectl, path: Path) -> Path:
    """A kubeconfig (mode 0600) with a 1 h token of ServiceAccount queuejob-operator.

    The CA is embedded as data, so the file alone is enough (e.g. mounted into a container).
    """
    token = kubectl("create", "token", "queuejob-operator", "-n", DEPLOY_NS, "--duration=1h")
    admin = yaml.safe_load(kubectl.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    ca_file = cluster["cluster"].pop("certificate-authority", None)
    if ca_file:
        ca = base64.b64encode(Path(ca_file).read_bytes()).decode()
        cluster["cluster"]["certificate-authority-data"] = ca
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "queuejob-operator", "user": {"token": token.strip()}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": cluster["name"], "user": "queuejob-operator"}}
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def wait(predicate: Callable[[], Any], timeout: float, what: str, log: Callable[[], str]) -> Any:
    """``predicate()``'s first truthy value within ``timeout`` s, else fail showing ``log()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; operator log:\n{log()[-4000:]}")
