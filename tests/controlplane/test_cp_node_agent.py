"""The localkube node agent: env, restarts, deletion, unsupported images, node heartbeat.

They run wherever pods run as local processes (``cluster.local_processes``: the default local
backend, or an existing cluster started by ``make cluster-up``); on kind a real kubelet runs
pods, so these tests of the dev-only agent are skipped there, with that reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fixtures.cluster import Cluster, wait_for
from localkube.process import alive

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def local(cluster: Cluster) -> Cluster:
    if not cluster.local_processes:
        pytest.skip(f"tests of the localkube node agent; {cluster.backend} runs a real kubelet")
    return cluster


def pod(
    name: str,
    command: list[str],
    *,
    image: str = "queuejob:dev",
    restart: str = "Never",
    env: list[dict[str, Any]] | None = None,
) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "t"}},
            "spec": {
                "restartPolicy": restart,
                "containers": [
                    {"name": "main", "image": image, "command": command, "env": env or []}
                ],
            },
        }
    )


def phase_is(cluster: Cluster, namespace: str, name: str, phase: str) -> None:
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        f"--for=jsonpath={{.status.phase}}={phase}",
        f"pod/{name}",
        "--timeout=90s",
        timeout=100,
    )


def test_cp_agent_resolves_env_from_api(local: Cluster, namespace: str) -> None:
    local.kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=password=s3cr3t"
    )
    local.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=mode=fast")
    env = [
        {"name": "LITERAL", "value": "plain"},
        {"name": "EXPANDED", "value": "$(LITERAL)-x"},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    keys = ["LITERAL", "EXPANDED", "PASSWORD", "MODE", "MY_NAME", "MY_NS", "PYTHONUNBUFFERED"]
    script = f"import os, json; print(json.dumps({{k: os.environ.get(k) for k in {keys!r}}}))"
    local.kubectl(
        "apply", "-n", namespace, "-f", "-", input=pod("envpod", ["python3", "-c", script], env=env)
    )
    phase_is(local, namespace, "envpod", "Succeeded")

    seen = json.loads(local.pod_logs(namespace, "envpod", "main").strip().splitlines()[-1])
    assert seen == {
        "LITERAL": "plain",
        "EXPANDED": "plain-x",
        "PASSWORD": "s3cr3t",
        "MODE": "fast",
        "MY_NAME": "envpod",
        "MY_NS": namespace,
        "PYTHONUNBUFFERED": "1",
    }


def test_cp_agent_missing_secret_is_reported_then_resolved(local: Cluster, namespace: str) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}]
    local.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=pod("waits", ["python3", "-c", "import os; print(os.environ['TOKEN'])"], env=env),
    )

    def waiting_reason() -> str | None:
        status = local.kubectl_json("get", "pod", "waits", "-n", namespace)["status"]
        states = status.get("containerStatuses") or [{}]
        return str(states[0].get("state", {}).get("waiting", {}).get("reason", "")) or None

    assert wait_for("CreateContainerConfigError", waiting_reason) == "CreateContainerConfigError"
    local.kubectl(
        "create", "secret", "generic", "late", "-n", namespace, "--from-literal=token=abc"
    )
    phase_is(local, namespace, "waits", "Succeeded")
    assert local.pod_logs(namespace, "waits", "main").strip() == "abc"


def test_cp_agent_restart_policy_on_failure(local: Cluster, namespace: str) -> None:
    script = "if [ -f ran ]; then echo second; exit 0; fi; touch ran; echo first; exit 3"
    local.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=pod("flaky", ["sh", "-c", script], restart="OnFailure"),
    )
    phase_is(local, namespace, "flaky", "Succeeded")

    status = local.kubectl_json("get", "pod", "flaky", "-n", namespace)["status"]
    container = status["containerStatuses"][0]
    assert container["restartCount"] == 1
    assert container["lastState"]["terminated"]["exitCode"] == 3
    assert container["state"]["terminated"]["exitCode"] == 0
    assert local.pod_logs(namespace, "flaky", "main").split() == ["first", "second"]


def test_cp_agent_pod_deletion_stops_the_process(local: Cluster, namespace: str) -> None:
    script = (
        "import os, signal, sys, time\n"
        "print('pid', os.getpid(), flush=True)\n"
        "def stop(*_):\n"
        "    print('got SIGTERM', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(3600)\n"
    )
    local.kubectl(
        "apply", "-n", namespace, "-f", "-", input=pod("longrun", ["python3", "-c", script])
    )
    phase_is(local, namespace, "longrun", "Running")
    logs = wait_for("pid line", lambda: local.pod_logs(namespace, "longrun", "main"))
    pid = int(logs.split()[1])
    assert alive(pid)

    local.kubectl("delete", "pod", "longrun", "-n", namespace, "--timeout=60s", timeout=70)
    assert "got SIGTERM" in local.pod_logs(namespace, "longrun", "main")
    assert not alive(pid), "the process must be gone once the pod is deleted"


def test_cp_agent_leaves_other_images_pending_with_event(local: Cluster, namespace: str) -> None:
    local.kubectl(
        "apply", "-n", namespace, "-f", "-", input=pod("foreign", ["nginx"], image="nginx:1.27")
    )

    def unsupported_event() -> dict[str, Any] | None:
        events = local.kubectl_json(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=foreign"
        )["items"]
        return next((e for e in events if e["reason"] == "UnsupportedImage"), None)

    event = wait_for("UnsupportedImage event", unsupported_event)
    assert event["type"] == "Warning"
    assert "nginx:1.27" in event["message"]
    status = local.kubectl_json("get", "pod", "foreign", "-n", namespace)["status"]
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "UnsupportedImage"
    local.kubectl("delete", "pod", "foreign", "-n", namespace, "--timeout=60s", timeout=70)


def test_cp_node_is_ready_and_untainted(local: Cluster) -> None:
    nodes = local.kubectl_json("get", "nodes")["items"]
    assert len(nodes) == 1
    node = nodes[0]
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert not node["spec"].get("taints")
    lease = local.kubectl_json("get", "lease", "-n", "kube-node-lease", node["metadata"]["name"])
    assert lease["spec"]["holderIdentity"] == node["metadata"]["name"]
