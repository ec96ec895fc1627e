"""CRDs on the real API server: Established; CR create/read/watch/status; validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from fixtures.cluster import Cluster

GROUP, VERSION, PLURAL = "test.localkube.dev", "v1", "widgets"
CRD = f"{PLURAL}.{GROUP}"

CRD_MANIFEST = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}

pytestmark = pytest.mark.timeout(180)


def widget(name: str, size: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size, **spec},
    }


@pytest.fixture(scope="module")
def widget_crd(cluster: Cluster) -> Iterator[str]:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(CRD_MANIFEST))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    yield CRD
    cluster.kubectl("delete", "crd", CRD, "--wait=false", check=False)


def test_cp_crd_is_established(cluster: Cluster, widget_crd: str) -> None:
    crd = cluster.kubectl_json("get", "crd", widget_crd)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    resources = cluster.kubectl("api-resources", f"--api-group={GROUP}", "-o", "name").stdout
    assert CRD in resources.split()


def test_cp_custom_resource_create_read_watch_status(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    api = kubernetes.client.CustomObjectsApi(cluster.api)
    start = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    since = start["metadata"]["resourceVersion"]

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(widget("w1", 4)))
    read = cluster.kubectl_json("get", "-n", namespace, "widget", "w1")
    assert read["spec"] == {"size": 4}

    api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "w1",
        {"status": {"phase": "Ready"}, "spec": {"size": 9}},
        _content_type="application/merge-patch+json",
    )
    after = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w1")
    assert after["status"] == {"phase": "Ready"}
    assert after["spec"]["size"] == 4, "the status subresource must ignore spec changes"

    events: list[tuple[str, Any]] = []
    stream = kubernetes.watch.Watch().stream(
        api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        resource_version=since,
        timeout_seconds=10,
    )
    for event in stream:
        obj = event["object"]
        events.append((event["type"], obj.get("status")))
        if obj.get("status") == {"phase": "Ready"}:
            break
    assert events[0] == ("ADDED", None)
    assert ("MODIFIED", {"phase": "Ready"}) in events


def test_cp_validation_rejects_invalid_object_naming_the_field(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    too_small = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(widget("bad", 0)), check=False
    )
    assert too_small.returncode != 0
    assert "spec.size" in too_small.stderr
    assert "greater than or equal to 1" in too_small.stderr

    bad_color = cluster.kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(widget("bad2", 2, color="green")),
        check=False,
    )
    assert bad_color.returncode != 0
    assert "spec.color" in bad_color.stderr
    assert "Unsupported value" in bad_color.stderr

    listing = cluster.kubectl_json("get", "-n", namespace, "widgets")
    assert listing["items"] == [], "rejected objects must not be stored"
