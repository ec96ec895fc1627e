"""A crash: a worker pod deleted mid-item loses nothing; its lease expires, the item is redone."""

from __future__ import annotations

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_worker_pod_killed_mid_item(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    items = [f"c-{i}" for i in range(6)]
    # The per-item command ignores SIGTERM, so the worker cannot hand its lease back before it
    # is killed: the item is recovered only through lease expiry.
    operator.apply(
        queuejob(
            "crash",
            namespace,
            items=items,
            parallelism=2,
            leaseSeconds=3,
            worker={"command": ["sh", "-c", "trap '' TERM; sleep 1.5"]},
        )
    )
    queue = operator.queue(namespace, "crash")
    leases = wait_for(queue.in_flight, 120, "an item being processed")
    victim = leases[0]
    print(f"deleting pod {victim.worker_id} while it holds {victim.item!r}")
    cluster.kubectl(
        "delete", "pod", victim.worker_id, "-n", namespace, "--grace-period=0", "--force"
    )

    qj = operator.wait_phase(namespace, "crash", ("Succeeded", "Failed"), timeout=150)
    status = qj["status"]
    assert status["phase"] == "Succeeded", status
    assert status["counts"]["succeeded"] == len(items)
    assert status["counts"]["failed"] == 0
    assert queue.succeeded_items() == set(items)
    print(f"retries after the crash: {status['counts']['retries']}")
    if cluster.local_processes:
        # Killed at once (SIGKILL after a zero grace period): the lease had to expire.
        assert status["counts"]["retries"] >= 1
