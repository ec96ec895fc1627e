"""Helpers of the manifest tests (the fixtures using them are in this directory's conftest.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY_NS = "queuejob-system"
OPERATOR_SA = f"system:serviceaccount:{DEPLOY_NS}:queuejob-operator"
CRD_NAME = "queuejobs.workqueue.example.com"


def http_get(url: str) -> tuple[int, str]:
    """(HTTP status, body) of a GET; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


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


def deploy_stream(docs: list[dict[str, Any]], replicas: int | None = None) -> str:
    """The objects as one ``kubectl apply -f -`` stream (Deployments scaled to ``replicas``)."""
    out = []
    for doc in docs:
        if replicas is not None and doc["kind"] == "Deployment":
            doc = {**doc, "spec": {**doc["spec"], "replicas": replicas}}
        out.append(json.dumps(doc))
    return "\n---\n".join(out)


def deployment_pod(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The pod spec of the Deployment ``name`` in the rendered deploy manifests."""
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    return dict(deployment["spec"]["template"]["spec"])


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The container of the queuejob-operator Deployment in the rendered deploy manifests."""
    (container,) = deployment_pod(docs, "queuejob-operator")["containers"]
    return dict(container)


#: The pod of :func:`container_env`'s downward API (``fieldRef``): name and namespace.
POD_FIELDS = {"metadata.name": "queuejob-operator-test-0", "metadata.namespace": DEPLOY_NS}


def container_env(
    container: dict[str, Any], secrets: dict[str, str], fields: dict[str, str] | None = None
) -> dict[str, str]:
    """The container's env as the kubelet would set it.

    ``secretKeyRef`` is resolved from ``{"secret/key": value}``, ``fieldRef`` (downward API) from
    ``fields`` (default :data:`POD_FIELDS`); any other source fails the test.
    """
    pod = POD_FIELDS if fields is None else fields
    env = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[f"{ref['name']}/{ref['key']}"]
        else:
            env[entry["name"]] = pod[entry["valueFrom"]["fieldRef"]["fieldPath"]]
    return env
