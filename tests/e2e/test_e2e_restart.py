"""An operator restart mid-run: the resume handler re-seeds idempotently and the work completes."""

from __future__ import annotations

import pytest

from fixtures.operator import OperatorHandle, queuejob, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_operator_restart_mid_run(operator: OperatorHandle, namespace: str) -> None:
    items = [f"r-{i:02d}" for i in range(20)]
    operator.apply(
        queuejob(
            "restart",
            namespace,
            items=items,
            parallelism=2,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.3"}]},
        )
    )
    operator.wait_phase(namespace, "restart", ("Running",), timeout=60)
    queue = operator.queue(namespace, "restart")
    wait_for(lambda: queue.stats().succeeded >= 2, 60, "some items to be done")

    # Stopped, then started: while no operator runs the workers go on (they only need Redis),
    # and nobody can mark the QueueJob finished, so the new operator's resume always meets it
    # unfinished. (A plain restart races the old operator, which may finish these few seconds
    # of work before it stops; then the resume has nothing to re-seed.)
    with operator.stopped():
        wait_for(lambda: queue.stats().succeeded >= 4, 60, "work going on without an operator")

    qj = operator.wait_phase(namespace, "restart", ("Succeeded", "Failed"), timeout=150)
    status = qj["status"]
    assert status["phase"] == "Succeeded", status
    # Re-seeding on resume added nothing: every item exactly once, none had to be redone.
    assert f"[{namespace}/restart] Queue {queue.name}: 0 of {len(items)} items added" in (
        operator.logs()
    )
    assert status["counts"]["total"] == len(items)
    assert status["counts"]["succeeded"] == len(items)
    assert status["counts"]["retries"] == 0
    assert queue.succeeded_items() == set(items)
