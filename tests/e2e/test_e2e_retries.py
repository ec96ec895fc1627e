"""Retries and dead letters; configuration errors are permanent (condition + Event, no retries)
until a missing ConfigMap or Secret is created: then the QueueJob starts and completes."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for
from workqueue import acl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_fail_once_retried_poison_dead_lettered(operator: OperatorHandle, namespace: str) -> None:
    ok = [f"ok-{i}" for i in range(5)]
    flaky = [f"fail-once-{i}" for i in range(3)]
    items = ok + flaky + ["poison-1"]
    operator.apply(
        queuejob(
            "retries",
            namespace,
            items=items,
            parallelism=2,
            leaseSeconds=10,
            retry={
                "maxAttempts": 3,
                "backoff": {"baseSeconds": 0.2, "capSeconds": 1, "jitter": 0.2},
            },
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.02"}]},
        )
    )
    qj = operator.wait_phase(namespace, "retries", ("Succeeded", "Failed"), timeout=150)
    status = qj["status"]
    assert status["phase"] == "Failed"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Failed"]["status"] == "True"
    assert conditions["Failed"]["reason"] == "ItemsDeadLettered"
    assert status["counts"]["succeeded"] == 8
    assert status["counts"]["failed"] == 1
    # 3 flaky items retried once each, the poison item twice before it is dead-lettered.
    assert status["counts"]["retries"] >= 5
    assert status["progress"] == "8/9"
    [dead] = status["deadLetters"]
    assert dead["item"] == "poison-1"
    assert dead["attempts"] == 3
    assert "poison" in dead["error"]
    assert operator.queue(namespace, "retries").succeeded_items() == set(ok + flaky)


def test_missing_configmap_is_a_permanent_config_error(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    operator.apply(
        queuejob(
            "nocm", namespace, itemsFrom={"configMapKeyRef": {"name": "absent", "key": "items"}}
        )
    )
    qj = operator.wait_phase(namespace, "nocm", ("Failed",), timeout=60)
    conditions = {c["type"]: c for c in qj["status"]["conditions"]}
    assert conditions["ConfigError"]["status"] == "True"
    assert conditions["ConfigError"]["reason"] == "ConfigMapNotFound"
    assert "spec.itemsFrom.configMapKeyRef" in conditions["ConfigError"]["message"]
    assert "absent" in conditions["ConfigError"]["message"]
    assert (
        "the QueueJob starts by itself once the ConfigMap" in conditions["ConfigError"]["message"]
    )

    def config_events() -> list[dict[str, object]]:
        events = cluster.kubectl_json(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.name=nocm,reason=ConfigError",
        )
        return list(events["items"])

    wait_for(config_events, 30, "a ConfigError Event")
    time.sleep(3)  # a retry storm would show up as more Events / a higher count by now
    events = config_events()
    assert len(events) == 1 and events[0].get("count", 1) == 1, events
    assert (
        cluster.kubectl("get", "job", "nocm-workers", "-n", namespace, check=False).returncode != 0
    )


def test_items_from_configmap_dedups(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    cluster.kubectl(
        "create", "configmap", "work", "-n", namespace, "--from-literal=items=a\nb\n\nc\nb\na\nd\n"
    )
    operator.apply(
        queuejob(
            "fromcm",
            namespace,
            ttlSecondsAfterFinished=1,
            parallelism=1,
            itemsFrom={"configMapKeyRef": {"name": "work", "key": "items"}},
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.01"}]},
        )
    )
    qj = operator.wait_phase(namespace, "fromcm", ("Succeeded", "Failed"), timeout=120)
    assert qj["status"]["phase"] == "Succeeded"
    assert qj["status"]["counts"]["total"] == 4
    seeded = next(c for c in qj["status"]["conditions"] if c["type"] == "Seeded")
    assert "2 duplicate" in seeded["message"]

    # ttlSecondsAfterFinished: the queue's Redis keys go, the QueueJob stays.
    queue = operator.queue(namespace, "fromcm")

    def removed() -> bool:
        status = operator.get_qj(namespace, "fromcm")["status"]
        seeded = next(c for c in status["conditions"] if c["type"] == "Seeded")
        return seeded["reason"] == "QueueRemoved" and not queue.keys_in_use()

    wait_for(removed, 60, "the queue's keys to be removed after the TTL")
    assert operator.get_qj(namespace, "fromcm")["status"]["phase"] == "Succeeded"
    # ... and so does the QueueJob's Redis user.
    user = operator.redis().execute_command("ACL", "GETUSER", acl.username(queue.name))
    assert user is None, user


def _events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    found = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    return list(found["items"])


def _count(events: list[dict[str, Any]], reason: str) -> int:
    return sum(int(e.get("count") or 1) for e in events if e.get("reason") == reason)


def _config_error(qj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in qj["status"]["conditions"] if c["type"] == "ConfigError")


def _rechecks(operator: OperatorHandle) -> float:
    key = ("workqueue_adds_total", (("name", "handler:config-recheck"),))
    return operator.metrics().get(key, 0.0)


@pytest.mark.timeout(420)
def test_config_error_resolves_once_missing_objects_exist(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    """Missing ConfigMap, then missing Secret: Failed/ConfigError, re-checked quietly (also
    across an operator restart), and once both exist: seeded, run and Succeeded."""
    interval = float(operator.setting("QUEUEJOB_CONFIG_RECHECK_INTERVAL", "30"))
    tick = 2 * interval + 30  # one re-check (first one interval after the failure), with slack
    items = [f"late-{i}" for i in range(6)]
    operator.apply(
        queuejob(
            "late",
            namespace,
            parallelism=2,
            itemsFrom={"configMapKeyRef": {"name": "late-items", "key": "items"}},
            redis={
                "url": operator.pod_redis_url,
                "passwordSecretRef": {"name": "late-redis", "key": "password"},
            },
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.01"}]},
        )
    )
    qj = operator.wait_phase(namespace, "late", ("Failed",), timeout=60)
    first = _config_error(qj)
    assert (first["status"], first["reason"]) == ("True", "ConfigMapNotFound")
    # kopf finished its create cycle (the permanent failure counts as handled): no progress
    # annotation of the create handler is left that could block or replay it.
    annotations = qj["metadata"].get("annotations") or {}
    assert "workqueue.example.com/last-handled-configuration" in annotations, annotations
    assert "workqueue.example.com/reconcile" not in annotations, annotations
    wait_for(lambda: _count(_events(cluster, namespace, "late"), "ConfigError") == 1, 30, "Event")

    # The ConfigMap appears, the Secret is still missing: the next re-check only updates the
    # condition's reason (same lastTransitionTime), with no Event and no phase change.
    cluster.kubectl(
        "create", "configmap", "late-items", "-n", namespace,
        "--from-literal=items=" + "\n".join(items),
    )  # fmt: skip

    def secret_missing() -> dict[str, Any] | None:
        got = operator.get_qj(namespace, "late")
        return got if _config_error(got)["reason"] == "SecretNotFound" else None

    qj = wait_for(secret_missing, tick, "ConfigError reason SecretNotFound")
    second = _config_error(qj)
    assert second["status"] == "True"
    assert second["lastTransitionTime"] == first["lastTransitionTime"]
    assert "spec.redis.passwordSecretRef" in second["message"] and "late-redis" in second["message"]
    assert qj["status"]["phase"] == "Failed"

    # Across an operator restart (resume leaves a Failed QueueJob alone) the re-check goes on,
    # and a re-check that finds nothing new writes nothing: same status, no new Event.
    operator.restart()
    quiet_status = operator.get_qj(namespace, "late")["status"]
    wait_for(lambda: _rechecks(operator) >= 1, tick, "a config re-check after the restart")
    assert operator.get_qj(namespace, "late")["status"] == quiet_status
    events = _events(cluster, namespace, "late")
    assert _count(events, "ConfigError") == 1, events
    assert _count(events, "ConfigResolved") == 0, events

    password = operator.redis_password or ""
    cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "late-redis", "namespace": namespace},
            "data": {"password": base64.b64encode(password.encode()).decode()},
        }),
    )  # fmt: skip
    qj = operator.wait_phase(namespace, "late", ("Succeeded",), timeout=tick + 90)
    status = qj["status"]
    assert status["counts"]["total"] == len(items)
    assert status["counts"]["succeeded"] == len(items)
    assert status["progress"] == f"{len(items)}/{len(items)}"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["ConfigError"]["status"], conditions["ConfigError"]["reason"]) == (
        "False",
        "Resolved",
    )
    assert conditions["Complete"]["status"] == "True"
    assert operator.queue(namespace, "late").succeeded_items() == set(items)

    events = _events(cluster, namespace, "late")
    assert _count(events, "ConfigError") == 1, events
    resolved = [e for e in events if e.get("reason") == "ConfigResolved"]
    assert {e["type"] for e in resolved} == {"Normal"}, resolved
    assert any("configuration is valid again" in e["message"] for e in resolved), resolved
    phases = [e["message"].split(":")[0] for e in events if e["message"].startswith("Phase ")]
    for step in (
        "Phase None -> Pending",
        "Phase Pending -> Failed",
        "Phase Failed -> Pending",
        "Phase Pending -> Running",
        "Phase Running -> Succeeded",
    ):
        assert phases.count(step) == 1, phases
