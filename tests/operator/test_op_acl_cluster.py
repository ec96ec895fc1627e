"""Workers logged in as their queue's ACL user ride out a node restart and a failover.

ACL users are not replicated and a node restarted without an ACL file comes back without them.
Three ``queuejob worker`` processes (``QUEUEJOB_REDIS_USERNAME``: the queue's own user) drain a
queue on the 3+3 cluster. The replica of the queue's master is restarted (it loses the user),
the operator's resync step re-applies the user where it is missing (``acl.missing_nodes`` then
``acl.apply_user``, as ``queuejob.credentials.resync`` does on every refresh), then the master is
SIGKILLed: the workers move to the promoted replica, log in there as the queue's user and finish
with every item succeeded once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from localkube.redis_cluster import LocalRedisCluster
from queuejob import redisconn
from workqueue import acl
from workqueue.config import QueueConfig
from workqueue.errors import QueueUnavailableError
from workqueue.redisqueue import LeaseQueue

pytestmark = pytest.mark.timeout(240)

ITEMS = 300
QUEUE = "acl-wc"


def start_worker(url: str, password: str, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "QUEUEJOB_REDIS_URL": url,
        "QUEUEJOB_REDIS_USERNAME": acl.username(QUEUE),
        "QUEUEJOB_REDIS_PASSWORD": password,
        "QUEUEJOB_QUEUE": QUEUE,
        "QUEUEJOB_LEASE_SECONDS": "3",
        "QUEUEJOB_WORKER_ID": worker_id,
        "QUEUEJOB_DEMO_WORK_SECONDS": "0.03",
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


def test_acl_user_is_reapplied_after_a_restart_and_survives_a_failover(tmp_path: Path) -> None:
    with LocalRedisCluster() as cluster:
        port = cluster.url.rsplit(":", 1)[1]
        url = f"redis+cluster://127.0.0.1:{port}"
        admin = redisconn.client(url, cluster.password, 2.0)
        password = acl.new_password()
        acl.apply_user(admin, QUEUE, password)
        queue = LeaseQueue(admin, QUEUE)
        queue.configure(QueueConfig(lease_seconds=3, max_attempts=10))
        assert queue.seed([f"i{i}" for i in range(ITEMS)]) == ITEMS
        master = cluster.master_of(queue.keys()[0])
        replica = cluster.replica_of(master)
        repaired: list[list[str]] = []
        stop = threading.Event()

        def resync() -> None:  # the operator's refresh, every 0.5 s here
            while not stop.wait(0.5):
                try:
                    missing = acl.missing_nodes(admin, QUEUE)
                    if missing:
                        acl.apply_user(admin, QUEUE, password)
                        repaired.append(missing)
                except Exception:
                    continue

        workers = [start_worker(url, password, f"w{i}", tmp_path / f"w{i}.log") for i in range(3)]
        resyncer = threading.Thread(target=resync, daemon=True)
        try:
            deadline = time.monotonic() + 60
            while queue.stats().succeeded < ITEMS // 4:
                assert time.monotonic() < deadline, queue.stats()
                time.sleep(0.02)
            replica.restart()  # no ACL file: it comes back without the user
            cluster.wait_healthy()
            assert acl.missing_nodes(admin, QUEUE) == [f"127.0.0.1:{replica.port}"]
            resyncer.start()
            deadline = time.monotonic() + 30
            while acl.missing_nodes(admin, QUEUE):
                assert time.monotonic() < deadline, "the resync did not re-apply the user"
                time.sleep(0.1)
            while queue.stats().succeeded < ITEMS // 2:
                assert time.monotonic() < deadline + 30, queue.stats()
                time.sleep(0.02)
            cluster.kill(master)
            promoted = cluster.wait_promoted(master, queue.keys()[0])
            assert promoted is replica
            master.start()  # rejoins as a replica, without the user: the resync adds it
            for proc in workers:
                proc.wait(timeout=150)
        finally:
            stop.set()
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
        assert [proc.returncode for proc in workers] == [0, 0, 0], logs
        assert repaired and repaired[0] == [f"127.0.0.1:{replica.port}"], repaired
        for _ in range(50):
            try:
                stats = queue.stats()
                break
            except QueueUnavailableError:
                time.sleep(0.1)
        assert (stats.succeeded, stats.pending, stats.leased, stats.dead) == (ITEMS, 0, 0, 0)
        redisconn.close_all()
