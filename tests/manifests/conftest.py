"""Fixtures of the manifest tests: the CRDs applied, and manifests/deploy applied for real.

``deployed`` applies the rendered ``kubectl kustomize manifests/deploy`` to the session's cluster
with every Deployment scaled to 0 replicas: the test is about what the API server admits (schema,
RBAC objects, Pod Security "restricted"), and on the local backend a running operator pod would
become a second operator process competing with the e2e tests' operator. Pod admission of the
templates is checked separately by creating each as a Pod with ``--dry-run=server``.
Teardown deletes namespace queuejob-system and the cluster-scoped RBAC objects; the CRD stays,
because other test areas use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mf_docker
import pytest
from mf_docker import Images
from mf_support import CRD_NAME, DEPLOY_NS, REPO, deploy_stream, render_deploy


@pytest.fixture(scope="session")
def crds(cluster: Any) -> None:
    """The CRDs of crds/ applied and Established."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")


@pytest.fixture(scope="session")
def deployed(cluster: Any, crds: None) -> Iterator[list[dict[str, Any]]]:
    """manifests/deploy applied for real (Deployments at 0 replicas); yields its objects.

    On a cluster where queuejob-system exists already (``make deploy`` on kind, then the whole
    suite with ``--cluster=kind``), the running deployment is left alone: the manifests are only
    applied with ``--dry-run=server`` and nothing is deleted afterwards.
    """
    docs = render_deploy(cluster)
    exists = cluster.kubectl("get", "namespace", DEPLOY_NS, check=False).returncode == 0
    if exists:
        cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=deploy_stream(docs))
        yield docs
        return
    try:
        cluster.kubectl("apply", "-f", "-", input=deploy_stream(docs, replicas=0))
        yield docs
    finally:
        cluster.kubectl(
            "delete", "namespace", DEPLOY_NS, "--ignore-not-found", "--wait=false", check=False
        )
        cluster.kubectl(
            "delete",
            "clusterrolebinding,clusterrole",
            "queuejob-operator",
            "--ignore-not-found",
            check=False,
        )


@pytest.fixture(scope="session")
def images() -> Images:
    """queuejob:dev and queuejob-redis:dev built (Docker started first; skipped without one)."""
    return mf_docker.images()
