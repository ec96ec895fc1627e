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


def start_worker(url: str, password: str, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "QUEUEJOB_REDIS_URL": url,
        "QUEUEJOB_REDIS_PASSWORD": password,
        "QUEUEJOB_QUEUE": "wc",
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
