"""Every pod this project runs passes the Pod Security "restricted" profile, for real.

Pod templates (the deploy Deployments, the fine-parallel Jobs and Pod, and the worker Job the
operator builds for a QueueJob) are created as Pods with ``--dry-run=server`` in a namespace that
enforces "restricted": Pod Security admission runs exactly as for a real pod. A deliberately
non-compliant pod is refused in the same namespace, so the check can fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mf_support import DEPLOY_NS, REPO, as_pod, load_docs, restrict

from queuejob import jobs, spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _admit(cluster: Any, namespace: str, pod: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(pod),
        check=False,
    )


def _assert_admitted(cluster: Any, namespace: str, pod: dict[str, Any]) -> None:
    result = _admit(cluster, namespace, pod)
    assert result.returncode == 0, f"pod {pod['metadata']['name']} refused:\n{result.stderr}"
    assert "PodSecurity" not in result.stderr, result.stderr


def test_deploy_namespace_enforces_restricted(cluster: Any, deployed: list[dict[str, Any]]) -> None:
    labels = cluster.kubectl_json("get", "namespace", DEPLOY_NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_deploy_pods_are_admitted_in_their_namespace(
    cluster: Any, deployed: list[dict[str, Any]]
) -> None:
    deployments = [d for d in deployed if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"queuejob-operator", "redis"}
    for deployment in deployments:
        name = f"psa-{deployment['metadata']['name']}"
        _assert_admitted(cluster, DEPLOY_NS, as_pod(name, deployment["spec"]["template"]))


def test_deploy_objects_exist_after_real_apply(
    cluster: Any, deployed: list[dict[str, Any]]
) -> None:
    for doc in deployed:
        meta = doc["metadata"]
        args = ["get", doc["kind"].lower(), meta["name"]]
        if "namespace" in meta:
            args += ["-n", meta["namespace"]]
        got = cluster.kubectl_json(*args)
        assert got["metadata"]["name"] == meta["name"]


def test_redis_cluster_pods_are_admitted_in_the_deploy_namespace(
    cluster: Any, deployed: list[dict[str, Any]]
) -> None:
    # The six nodes' template (its claim template's volume as the PVC of pod 0) and the create Job.
    rendered = load_docs(
        cluster.kubectl("kustomize", str(REPO / "manifests" / "redis-cluster-local")).stdout
    )
    (statefulset,) = [d for d in rendered if d["kind"] == "StatefulSet"]
    (job,) = [d for d in rendered if d["kind"] == "Job"]
    node = statefulset["spec"]["template"]
    claims = [c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]]
    volumes = [
        {"name": c, "persistentVolumeClaim": {"claimName": f"{c}-redis-cluster-0"}} for c in claims
    ]
    node = {**node, "spec": {**node["spec"], "volumes": volumes}}
    for name, template in (
        ("redis-cluster-0", node),
        ("redis-cluster-create", job["spec"]["template"]),
    ):
        security = template["spec"]["securityContext"]
        assert security["runAsUser"] == 999 and security["runAsNonRoot"] is True
        _assert_admitted(cluster, DEPLOY_NS, as_pod(f"psa-{name}", template))


def test_fine_parallel_pods_are_admitted(cluster: Any, namespace: str) -> None:
    restrict(cluster, namespace)
    templates: list[tuple[str, dict[str, Any]]] = []
    for path in sorted((REPO / "manifests" / "fine-parallel").glob("*.yaml")):
        for doc in load_docs(path.read_text()):
            if doc["kind"] == "Pod":
                templates.append((doc["metadata"]["name"], doc))
            elif doc["kind"] == "Job":
                templates.append((doc["metadata"]["name"], doc["spec"]["template"]))
    assert {name for name, _ in templates} >= {"redis-master", "job-wq-2"}
    for name, template in templates:
        _assert_admitted(cluster, namespace, as_pod(f"psa-{name}", template))


def test_operator_worker_pod_is_admitted(cluster: Any, namespace: str) -> None:
    restrict(cluster, namespace)
    body = {
        "apiVersion": "workqueue.example.com/v1alpha1",
        "kind": "QueueJob",
        "metadata": {
            "name": "psa",
            "namespace": namespace,
            "uid": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
        },
        "spec": {"items": ["a"], "worker": {"command": ["sh", "-c", "true"]}},
    }
    job = jobs.build_job(
        body,
        spec.parse(body["spec"]),
        queue="qj:psa",
        redis_url="redis://redis.queuejob-system.svc:6379/0",
        default_image="queuejob:dev",
        image_pull_policy="IfNotPresent",
        backoff_limit=1,
    )
    _assert_admitted(cluster, namespace, as_pod("psa-worker", job["spec"]["template"]))


def test_a_noncompliant_pod_is_refused(cluster: Any, namespace: str) -> None:
    restrict(cluster, namespace)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "psa-root"},
        "spec": {"containers": [{"name": "c", "image": "queuejob:dev"}]},
    }
    result = _admit(cluster, namespace, pod)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr
