"""Every manifest of this repository is accepted by the real API server (``--dry-run=server``).

Server-side dry run runs the full admission chain (schema validation of built-in kinds and of the
QueueJob CRD's OpenAPI schema and CEL rules, defaulting, Pod Security) without persisting anything.
The admission policy of crds/ is compiled by the API server on create (a CEL expression that
does not compile, or names an unknown variable or function, is refused), so its dry run checks
every expression of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from mf_support import REPO, load_docs, restrict

CRDS = REPO / "crds"
POLICY = CRDS / "queuejob-rbac-policy.yaml"
EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
FINE_PARALLEL = sorted((REPO / "manifests" / "fine-parallel").glob("*.yaml"))

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_manifest_sets_are_not_empty() -> None:
    # Guards the parametrized tests below against silently running zero cases.
    assert len(EXAMPLES) >= 4, EXAMPLES
    assert {p.name for p in FINE_PARALLEL} >= {"redis-pod.yaml", "redis-service.yaml", "job.yaml"}


def _dry_run(cluster: Any, path: Path, namespace: str) -> str:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False
    )
    assert result.returncode == 0, f"{path.relative_to(REPO)} rejected:\n{result.stderr}"
    return str(result.stdout)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_server_dry_run(
    cluster: Any, crds: None, namespace: str, path: Path
) -> None:
    out = _dry_run(cluster, path, namespace)
    kinds = {doc["kind"] for doc in load_docs(path.read_text())}
    assert "QueueJob" in kinds
    assert "(server dry run)" in out


@pytest.mark.parametrize("path", FINE_PARALLEL, ids=lambda p: p.name)
def test_fine_parallel_passes_server_dry_run(
    cluster: Any, crds: None, namespace: str, path: Path
) -> None:
    restrict(cluster, namespace)
    out = _dry_run(cluster, path, namespace)
    assert "(server dry run)" in out


def test_deploy_kustomization_passes_server_dry_run(
    cluster: Any, deployed: list[dict[str, Any]]
) -> None:
    # The unmodified rendering (operator replicas 2) on top of the real apply done by `deployed`.
    rendered = cluster.kubectl("kustomize", str(REPO / "manifests" / "deploy")).stdout
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.count("(server dry run)") == len(load_docs(rendered))


def test_a_bad_queuejob_is_rejected_by_the_crd_schema(
    cluster: Any, crds: None, namespace: str
) -> None:
    # Shows the dry runs above can fail: parallelism above the CRD's maximum is refused.
    bad = (
        "apiVersion: workqueue.example.com/v1alpha1\nkind: QueueJob\n"
        "metadata: {name: bad}\nspec: {items: [a], parallelism: 1000}\n"
    )
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=bad, check=False
    )
    assert result.returncode != 0
    assert "parallelism" in result.stderr


@pytest.mark.parametrize("overlay", ["redis-cluster", "redis-cluster-local"])
def test_redis_cluster_kustomization_passes_server_dry_run(
    cluster: Any, deployed: list[dict[str, Any]], overlay: str
) -> None:
    rendered = cluster.kubectl("kustomize", str(REPO / "manifests" / overlay)).stdout
    docs = load_docs(rendered)
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert ("StatefulSet", "redis-cluster") in kinds and ("Job", "redis-cluster-create") in kinds
    assert ("Deployment", "redis") not in kinds, "the single Redis is replaced"
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)


def test_admission_policy_passes_server_dry_run(cluster: Any, crds: None) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "-f", str(POLICY), check=False)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    kinds = [doc["kind"] for doc in load_docs(POLICY.read_text())]
    assert kinds == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert result.stdout.count("(server dry run)") == 2, result.stdout


def test_a_policy_expression_that_does_not_compile_is_rejected(cluster: Any, crds: None) -> None:
    # Shows the dry run above checks the CEL: a misspelt variable is refused on create.
    (policy, _) = load_docs(POLICY.read_text())
    policy["metadata"]["name"] = "broken.workqueue.example.com"
    policy["spec"]["validations"][0]["expression"] = "variables.nosuch"
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(policy), check=False
    )
    assert result.returncode != 0
    assert "spec.validations[0].expression" in result.stderr, result.stderr


def test_the_policy_ships_with_the_crd() -> None:
    # `kubectl apply -f crds/` applies every YAML file there; kustomize (manifests/deploy) only
    # what crds/Kustomization lists: both must install the policy.
    listed = yaml.safe_load((CRDS / "Kustomization").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in CRDS.glob("*.yaml"))
    assert POLICY.name in listed
