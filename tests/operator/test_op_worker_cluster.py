"""The built-in worker on a Redis Cluster, as real processes: its slot's master is SIGKILLed.

The operator's client factory (``redisconn``) and the workers take a ``redis+cluster://`` URL;
three ``queuejob worker`` processes with ``QUEUEJOB_REDIS_WAIT_REPLICAS=1`` drain a queue while
the master of its slot is killed and its replica promoted; they reconnect by themselves and
exit 0 once the queue is done, with every item succeeded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from localkube.redis_cluster import LocalRedisCluster
from queuejob import redisconn
from workqueue import acl
from workqueue.config import QueueConfig
from workqueue.errors import QueueUnavailableError
from workqueue.redisqueue import LeaseQueue

pytestmark = pytest.mark.timeout(180)

ITEMS = 300

#: What a worker logs when a call fails because Redis is unreachable, per kind of call.
OUTAGE_SEEN = (
    "Redis problem, retrying",  # leasing the next item
    "acknowledgement not delivered",  # completing an item (re-sent while the lease is valid)
    "heartbeat for",  # renewing a lease
)


def start_worker(
    url: str,
    password: str,
    worker_id: str,
    log: Path,
    *,
    queue: str = "wc",
    username: str | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "QUEUEJOB_REDIS_URL": url,
        "QUEUEJOB_REDIS_PASSWORD": password,
        "QUEUEJOB_REDIS_USERNAME": username or "",
        "QUEUEJOB_QUEUE": queue,
        "QUEUEJOB_LEASE_SECONDS": "3",
        "QUEUEJOB_WORKER_ID": worker_id,
        "QUEUEJOB_DEMO_WORK_SECONDS": "0.02",
        "QUEUEJOB_REDIS_TIMEOUT": "2",
        "QUEUEJOB_REDIS_WAIT_REPLICAS": "1",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "queuejob.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_workers_ride_out_a_master_failover(tmp_path: Path) -> None:
    with LocalRedisCluster() as cluster:
        port = cluster.url.rsplit(":", 1)[1]
        url = f"redis+cluster://127.0.0.1:{port}"  # the password travels separately
        client = redisconn.client(url, cluster.password, 2.0)
        assert isinstance(client, RedisCluster)
        queue = LeaseQueue(client, "wc")
        queue.configure(QueueConfig(lease_seconds=3, max_attempts=10))
        assert queue.seed([f"i{i}" for i in range(ITEMS)]) == ITEMS
        master = cluster.master_of(queue.keys()[0])
        workers = [
            start_worker(url, cluster.password, f"w{i}", tmp_path / f"w{i}.log") for i in range(3)
        ]
        try:
            deadline = time.monotonic() + 60
            while queue.stats().succeeded < ITEMS // 3:
                assert time.monotonic() < deadline, queue.stats()
                time.sleep(0.02)
            cluster.kill(master)
            cluster.wait_promoted(master, queue.keys()[0])
            master.start()  # rejoins as a replica: WAIT 1 can be satisfied again
            for proc in workers:
                proc.wait(timeout=120)
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
        assert [proc.returncode for proc in workers] == [0, 0, 0], logs
        # The workers met the outage: on their next lease, acknowledgement or heartbeat,
        # whichever call each had in flight when the master died.
        assert any(any(mark in text for mark in OUTAGE_SEEN) for text in logs.values()), logs
        for _ in range(50):
            try:
                stats = queue.stats()
                break
            except QueueUnavailableError:
                time.sleep(0.1)
        assert (stats.succeeded, stats.pending, stats.leased, stats.dead) == (ITEMS, 0, 0, 0)
        redisconn.close_all()


def test_a_worker_waits_for_its_user_instead_of_failing(tmp_path: Path) -> None:
    """A worker that starts while the cluster refuses its ACL user (a node restarted without its
    ACL file, until the operator's refresh puts the user back) cannot even read the slot map:
    redis-py raises ``RedisClusterException``, which is no ``RedisError``. The worker retries
    instead of exiting (an exit would use up its Job index's retries), and drains the queue once
    the user exists."""
    with LocalRedisCluster() as cluster:
        port = cluster.url.rsplit(":", 1)[1]
        url = f"redis+cluster://127.0.0.1:{port}"
        admin = redisconn.client(url, cluster.password, 2.0)
        queue = LeaseQueue(admin, "wu")
        queue.configure(QueueConfig(lease_seconds=3, max_attempts=3))
        assert queue.seed([f"u{i}" for i in range(20)]) == 20
        password = acl.new_password()
        log = tmp_path / "w.log"
        worker = start_worker(url, password, "w", log, queue="wu", username=acl.username("wu"))
        try:
            deadline = time.monotonic() + 60
            while "cannot connect" not in log.read_text(errors="replace"):
                assert worker.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.1)
            time.sleep(1.5)  # at least one more refused try
            assert worker.poll() is None, log.read_text(errors="replace")
            acl.apply_user(admin, "wu", password)
            assert worker.wait(timeout=60) == 0, log.read_text(errors="replace")
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        text = log.read_text(errors="replace")
        assert "WRONGPASS" in text or "invalid username-password" in text, text
        assert queue.stats().succeeded == 20
