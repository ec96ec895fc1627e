"""Retries and dead letters; configuration errors are permanent (condition + Event, no retries)."""

from __future__ import annotations

import time

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for

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
