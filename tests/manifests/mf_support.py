"""Helpers of the manifest tests (the fixtures using them are in this directory's conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY_NS = "queuejob-system"
OPERATOR_SA = f"system:serviceaccount:{DEPLOY_NS}:queuejob-operator"
CRD_NAME = "queuejobs.workqueue.example.com"


def load_docs(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``text``."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_deploy(cluster: Any) -> list[dict[str, Any]]:
    """``kubectl kustomize manifests/deploy`` as a list of objects."""
    out = cluster.kubectl("kustomize", str(REPO / "manifests" / "deploy")).stdout
    return load_docs(out)


def as_pod(name: str, template: dict[str, Any]) -> dict[str, Any]:
    """A Pod made from a pod template (for Pod Security admission with --dry-run=server)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(template.get("metadata", {}).get("labels", {}))},
        "spec": template["spec"],
    }


def restrict(cluster: Any, namespace: str) -> None:
    """Make ``namespace`` enforce Pod Security "restricted"."""
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
