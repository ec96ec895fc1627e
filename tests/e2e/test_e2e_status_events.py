"""Status by events: queue notifications, lease expiries and the resync, each on its own.

On a private local control plane (the session's operator watches all namespaces and refreshes
every QueueJob every second, which would hide the event path), one operator runs with the
resync pushed out of reach (``QUEUEJOB_STATUS_INTERVAL`` 3600 s): every status change it makes
can only come from a notification, a watch event or a lease expiry it scheduled itself. The
QueueJobs have ``parallelism: 0`` (no worker pod); the test leases and completes items itself.

- a completion in Redis reaches ``status.counts`` through the queue's notification;
- a burst of 100 notifications of one QueueJob, received within the coalescing delay, gives
  exactly one refresh (``queuejob_refresh_coalesced`` counts the other 99);
- an expired lease is reaped although no notification is published after the lease (a test
  subscriber on the queue's channel proves it): the refresh after the lease scheduled one at
  the lease's expiry;
- then a second operator with a short resync (2 s) and no notification: an item added to the
  queue behind the scripts' back (so nothing is published) reaches the status by the resync.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from fixtures.operator import CRD, TEST_SETTINGS, queuejob
from localkube import LocalCluster, paths
from localkube.redis_server import RedisServer
from queuejob.notifications import channel
from queuejob_demo.stack import OperatorProcess
from workqueue.keys import QueueKeys
from workqueue.redisqueue import LeaseQueue

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

NS = "status-events"
#: The resync test's own namespace and operator (two operators must not share a QueueJob).
RESYNC_NS = "status-resync"
DEADLINE = 90.0
EVENT_SETTINGS = {
    **TEST_SETTINGS,
    "QUEUEJOB_STATUS_INTERVAL": "3600",
    "QUEUEJOB_STATUS_IDLE_INTERVAL": "3600",
    "QUEUEJOB_NOTIFY_DELAY": "2",
}


@dataclass
class Env:
    kubeconfig: Path
    redis: RedisServer
    logs: Path

    def kubectl(self, *args: str, input: str | None = None) -> str:
        import subprocess

        result = subprocess.run(
            [str(paths.kubectl_binary()), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def qj(self, name: str, namespace: str = NS) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            self.kubectl("get", "qj", name, "-n", namespace, "-o", "json")
        )
        return found

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.redis.port, password=self.redis.password, decode_responses=True
        )

    def operator(self, name: str, env: dict[str, str], namespace: str = NS) -> OperatorProcess:
        return OperatorProcess(
            self.kubeconfig,
            redis_url=f"redis://127.0.0.1:{self.redis.port}/0",
            redis_password=self.redis.password,
            log_file=self.logs / f"{name}.log",
            extra_env=env,
            extra_args=("--standalone",),
            namespaces=(namespace,),
        )


def wait_for(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def metric(process: OperatorProcess, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(process.metrics_text()):
        for sample in family.samples:
            if sample.name == name and (labels is None or labels.items() <= sample.labels.items()):
                return float(sample.value)
    raise AssertionError(f"no metric {name} {labels or ''}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with LocalCluster() as local:
        server = RedisServer()
        server.start()
        try:
            e = Env(local.kubeconfig, server, tmp_path_factory.mktemp("status-events"))
            e.kubectl("apply", "-f", str(CRD))
            e.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s",
                "crd/queuejobs.workqueue.example.com",
            )  # fmt: skip
            e.kubectl("create", "namespace", NS)
            e.kubectl("create", "namespace", RESYNC_NS)
            yield e
        finally:
            server.close()


@pytest.fixture(scope="module")
def events_operator(env: Env) -> Iterator[OperatorProcess]:
    process = env.operator("events", EVENT_SETTINGS)
    process.start()
    try:
        yield process
    finally:
        process.stop(grace=20)


def _create(env: Env, name: str, items: int, namespace: str = NS) -> str:
    manifest = queuejob(name, namespace, items=[f"i{i}" for i in range(items)], parallelism=0)
    env.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def seeded() -> str | None:
        status = env.qj(name, namespace).get("status", {})
        total = (status.get("counts") or {}).get("total")
        return str(status["queue"]) if status.get("queue") and total == items else None

    queue: str = wait_for(f"{name} seeded and counted", seeded)
    return queue


def _counts(env: Env, name: str, namespace: str = NS) -> dict[str, int]:
    counts: dict[str, int] = env.qj(name, namespace).get("status", {}).get("counts") or {}
    return counts


def _settle(process: OperatorProcess, channels: int) -> None:
    """Wait until ``channels`` queues are subscribed and no refresh is queued or running."""
    wait_for(
        f"{channels} channels subscribed, no refresh queued or running",
        lambda: (
            metric(process, "queuejob_queue_notification_channels") >= channels
            and metric(process, "queuejob_refresh_queue_depth") == 0
            and metric(process, "queuejob_refresh_processing") == 0
        ),
    )


def test_a_completion_reaches_the_status_by_its_notification(
    env: Env, events_operator: OperatorProcess
) -> None:
    queue = LeaseQueue(env.client(), _create(env, "notified", 3))
    _settle(events_operator, 1)
    received = metric(events_operator, "queuejob_queue_notifications_total")
    [lease] = queue.lease("tester")
    queue.complete(lease)
    wait_for("succeeded 1 in status", lambda: _counts(env, "notified").get("succeeded") == 1)
    assert metric(events_operator, "queuejob_queue_notifications_total") - received >= 2


def test_a_burst_of_notifications_gives_one_refresh(
    env: Env, events_operator: OperatorProcess
) -> None:
    queue_name = _create(env, "burst", 2)
    _settle(events_operator, 2)
    refreshes = metric(events_operator, "queuejob_refreshes_total")
    received = metric(events_operator, "queuejob_queue_notifications_total")
    coalesced = metric(events_operator, "queuejob_refresh_coalesced_total")
    client = env.client()
    pipe = client.pipeline(transaction=False)
    for _ in range(100):
        pipe.execute_command("SPUBLISH", channel(queue_name), "")
    assert sum(pipe.execute()) == 100  # the operator is subscribed

    def all_received() -> bool:
        got = metric(events_operator, "queuejob_queue_notifications_total") - received
        return got >= 100

    wait_for("100 notifications received", all_received)
    _settle(events_operator, 2)
    assert metric(events_operator, "queuejob_refreshes_total") - refreshes == 1
    assert metric(events_operator, "queuejob_refresh_coalesced_total") - coalesced == 99


def test_an_expired_lease_is_reaped_without_any_notification(
    env: Env, events_operator: OperatorProcess
) -> None:
    queue_name = _create(env, "expiring", 2)
    _settle(events_operator, 3)
    client = env.client()
    listener = client.pubsub()
    listener.ssubscribe(channel(queue_name))
    queue = LeaseQueue(client, queue_name)
    [lease] = queue.lease("tester", lease_seconds=3)
    wait_for("the lease in status", lambda: _counts(env, "expiring").get("leased") == 1)
    wait_for(
        "the lease reaped",
        lambda: (c := _counts(env, "expiring")).get("leased") == 0 and c.get("retries") == 1,
    )
    messages = []
    while (message := listener.get_sharded_message(timeout=0.5)) is not None:
        if message["type"] == "smessage":
            messages.append(message)
    assert len(messages) == 1, f"only the lease may have been published, got {messages}"
    assert lease.item in client.lrange(QueueKeys(queue_name).key("pending"), 0, -1)
    listener.close()


def test_a_lost_notification_is_recovered_by_the_resync(env: Env) -> None:
    resync = {
        **EVENT_SETTINGS,
        "QUEUEJOB_STATUS_INTERVAL": "2",
        "QUEUEJOB_STATUS_IDLE_INTERVAL": "2",
    }
    process = env.operator("resync", resync, RESYNC_NS)
    process.start()
    try:
        queue_name = _create(env, "resynced", 2, RESYNC_NS)
        # The first refreshes are done: from here on only the resync can see a change that
        # publishes nothing.
        _settle(process, 1)
        keys = QueueKeys(queue_name)
        client = env.client()
        client.sadd(keys.key("seen"), "behind-the-back")
        client.rpush(keys.key("pending"), "behind-the-back")
        wait_for("total 3 in status", lambda: _counts(env, "resynced", RESYNC_NS).get("total") == 3)
    finally:
        process.stop(grace=20)
