"""The scalable item sources end to end on the local cluster.

- ``spec.itemsFrom.range``: 3000 indices from 100 run to Succeeded through real worker pods,
  every index exactly once; a long seed shows its progress in the condition Seeded (False,
  reason Seeding), and the operator restarted in the middle of it resumes at the cursor: every
  item in the queue exactly once;
- ``spec.itemsFrom.configMapKeyRefs``: a missing ConfigMap is a ConfigError naming its index;
  once it exists the items of all ConfigMaps run, duplicates across them dropped.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def seeded_condition(operator: OperatorHandle, namespace: str, name: str) -> dict[str, Any]:
    for c in operator.get_qj(namespace, name).get("status", {}).get("conditions") or []:
        if c["type"] == "Seeded":
            return dict(c)
    return {}


def test_index_range_runs_to_succeeded(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    operator.apply(
        queuejob(
            "ranged",
            namespace,
            itemsFrom={"range": {"start": 100, "count": 3000}},
            parallelism=3,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0"}]},
        )
    )
    qj = operator.wait_phase(namespace, "ranged", ("Succeeded", "Failed"), timeout=400)
    status = qj["status"]
    assert status["phase"] == "Succeeded", status
    assert status["counts"]["total"] == 3000 and status["counts"]["succeeded"] == 3000
    assert status["progress"] == "3000/3000"
    seeded = seeded_condition(operator, namespace, "ranged")
    assert seeded["status"] == "True" and "(the indices 100..3099)" in seeded["message"]
    queue = operator.queue(namespace, "ranged")
    assert queue.succeeded_items() == {str(i) for i in range(100, 3100)}


def test_seed_interrupted_by_an_operator_restart_resumes_without_duplicates(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    # The largest range the schema admits: seeding it outlasts the operator restart below also
    # on a quiet machine (a range is seeded at some 300,000 items/s).
    count = 10_000_000
    operator.apply(queuejob("big", namespace, itemsFrom={"range": {"count": count}}, suspend=True))
    # A long seed shows its progress while it runs.
    progress = wait_for(
        lambda: (
            (c := seeded_condition(operator, namespace, "big")).get("reason") == "Seeding" and c
        ),
        300,
        "the condition Seeded with reason Seeding",
    )
    assert progress["status"] == "False" and f"of {count} items in queue" in progress["message"]
    qname = progress["message"].split("in queue ", 1)[1].split()[0].rstrip(";")
    client = operator.redis()
    counters = f"wq:{{{qname}}}:counters"

    operator.restart()

    qj = operator.wait_phase(namespace, "big", ("Suspended",), timeout=400)
    assert qj["status"]["progress"] == f"0/{count}"
    seeded = seeded_condition(operator, namespace, "big")
    assert seeded["status"] == "True" and seeded["reason"] == "ItemsSeeded", seeded
    assert seeded["message"].startswith(f"{count} items in queue {qname}")
    assert operator.queue(namespace, "big").stats().total == count
    # Every index once: as many pending entries as the range has items, the range remembered by
    # its cursor [range_first, range_next) alone (no index in the seen set), and the list's head
    # and tail in order.
    assert client.llen(f"wq:{{{qname}}}:pending") == count
    assert client.scard(f"wq:{{{qname}}}:seen") == 0
    assert int(client.hget(counters, "range_first") or -1) == 0
    assert int(client.hget(counters, "range_next") or 0) == count
    assert client.lrange(f"wq:{{{qname}}}:pending", 0, 2) == ["0", "1", "2"]
    assert client.lrange(f"wq:{{{qname}}}:pending", -2, -1) == [str(count - 2), str(count - 1)]
    # The restart interrupted the seed: the resumed run added only what was missing (a part).
    logs = operator.logs()
    added = [int(n) for n in re.findall(rf"(\d+) of {count} items added", logs)]
    assert len(added) == 1 and 0 < added[0] < count, added
    assert client.lindex(f"wq:{{{qname}}}:pending", count - added[0]) == str(count - added[0])
    # The stopping operator ended its seed between two chunks and exited cleanly.
    assert "SeedStopped" not in logs and "Traceback" not in logs
    cluster.kubectl("delete", "queuejob", "big", "-n", namespace, "--wait=true")


def test_several_configmaps_run_to_succeeded(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    cluster.kubectl(
        "create", "configmap", "part-a", "-n", namespace, "--from-literal=items=x\ny\nz\n"
    )
    operator.apply(
        queuejob(
            "maps",
            namespace,
            itemsFrom={
                "configMapKeyRefs": [
                    {"name": "part-a", "key": "items"},
                    {"name": "part-b", "key": "items"},
                ]
            },
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0"}]},
        )
    )
    failed = operator.wait_phase(namespace, "maps", ("Failed",), timeout=120)
    error = next(c for c in failed["status"]["conditions"] if c["type"] == "ConfigError")
    assert error["reason"] == "ConfigMapNotFound"
    assert "spec.itemsFrom.configMapKeyRefs[1]" in error["message"] and "part-b" in error["message"]

    cluster.kubectl(
        "create", "configmap", "part-b", "-n", namespace, "--from-literal=items=z\nw\n\nv\n"
    )
    qj = operator.wait_phase(namespace, "maps", ("Succeeded",), timeout=300)
    assert qj["status"]["counts"]["total"] == 5
    seeded = seeded_condition(operator, namespace, "maps")
    assert "1 duplicate lines ignored" in seeded["message"], seeded
    assert operator.queue(namespace, "maps").succeeded_items() == {"x", "y", "z", "w", "v"}
