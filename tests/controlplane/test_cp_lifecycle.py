"""Garbage collection through ownerReferences, and a namespace deletion that finishes."""

from __future__ import annotations

import json
import uuid

import pytest

from fixtures.cluster import Cluster

pytestmark = pytest.mark.timeout(180)


def test_cp_owner_reference_gc_deletes_the_child(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace, "--from-literal=a=1")
    owner_uid = cluster.kubectl_json("get", "configmap", "owner", "-n", namespace)["metadata"][
        "uid"
    ]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
        "data": {"b": "2"},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(child))
    cluster.kubectl("create", "configmap", "bystander", "-n", namespace, "--from-literal=c=3")

    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    cluster.kubectl(
        "wait", "-n", namespace, "--for=delete", "configmap/child", "--timeout=90s", timeout=100
    )
    names = {
        cm["metadata"]["name"]
        for cm in cluster.kubectl_json("get", "configmaps", "-n", namespace)["items"]
    }
    assert "child" not in names
    assert "bystander" in names, "GC must only delete dependents"


def test_cp_namespace_deletion_finishes(cluster: Cluster) -> None:
    name = f"t-nsdel-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("create", "configmap", "cm", "-n", name, "--from-literal=a=1")
    cluster.kubectl("create", "serviceaccount", "sa", "-n", name)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "queuejob:dev",
                    "command": ["python3", "-c", "import time; time.sleep(3600)"],
                }
            ],
        },
    }
    cluster.kubectl("apply", "-n", name, "-f", "-", input=json.dumps(pod))
    cluster.kubectl(
        "wait",
        "-n",
        name,
        "--for=jsonpath={.status.phase}=Running",
        "pod/sleeper",
        "--timeout=90s",
        timeout=100,
    )

    cluster.kubectl("delete", "namespace", name, "--wait=false")
    cluster.kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=120s", timeout=130)
    gone = cluster.kubectl("get", "namespace", name, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
