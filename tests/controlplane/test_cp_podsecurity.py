"""Pod Security admission is on: "restricted" enforcement rejects a violating Pod."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.cluster import Cluster

pytestmark = pytest.mark.timeout(120)


def pod(name: str, security: dict[str, Any] | None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": "queuejob:dev",
        "command": ["python3", "-c", "print('ok')"],
    }
    if security is not None:
        container["securityContext"] = security
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if security is not None:
        spec["securityContext"] = {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_cp_restricted_namespace_rejects_violating_pod(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )

    rejected = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(pod("loose", None)), check=False
    )
    assert rejected.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in rejected.stderr
    assert "allowPrivilegeEscalation != false" in rejected.stderr
    assert "runAsNonRoot != true" in rejected.stderr

    compliant = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod("strict", compliant)))
    names = [
        p["metadata"]["name"] for p in cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    ]
    assert names == ["strict"]
