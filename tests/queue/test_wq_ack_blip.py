"""Acknowledgements survive a Redis blip: the worker re-sends complete/fail with the same lease
token while its lease is valid, so a restart shorter than the lease costs no re-run.

One server: a real ``redis-server`` with persistence (AOF, ``appendfsync always``: the lease
survives the restart). Redis Cluster (3+3): the master of the queue's slot is SIGKILLed, its
replica promoted (the worker uses ``WAIT 1``, so the lease is on the replica), and the killed
node restarts as the new master's replica. A real worker (:class:`queuejob.worker.Worker`) runs
in a thread with a per-item command that signals it started and waits for the test's
go-ahead: the test crashes Redis (or the master) while the item runs, lets the command finish
(so the worker acknowledges into the outage), waits until the worker has failed to deliver at
least once, then brings Redis back.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from localkube.redis_cluster import LocalRedisCluster
from localkube.redis_server import RedisServer
from queuejob.worker import EXIT_DONE, Worker, WorkerConfig
from workqueue.config import QueueConfig
from workqueue.redisqueue import LeaseQueue

DEADLINE = 120.0

#: The per-item command: append the item to RUNS, create STARTED, wait for GO, exit with CODE.
COMMAND = """
import os, pathlib, sys, time
runs, started, go, code = sys.argv[1:5]
with open(runs, "a") as f:
    f.write(os.environ["QUEUEJOB_ITEM"] + "\\n")
pathlib.Path(started).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.02)
sys.exit(int(code))
"""


def _wait(what: str, condition: Callable[[], bool], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _undelivered(caplog: pytest.LogCaptureFixture) -> int:
    return sum("acknowledgement not delivered" in r.getMessage() for r in caplog.records)


def _run_through_blip(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, *, exit_code: int, lease_seconds: float
) -> tuple[RedisServer, LeaseQueue, Path, list[int]]:
    """Start a worker on one item, crash Redis while the item runs, finish the item, wait for
    one undelivered acknowledgement, start Redis again; returns when the worker exited."""
    caplog.set_level(logging.INFO, logger="queuejob.worker")
    server = RedisServer(persist=True).start()
    queue = LeaseQueue(server.client(), "blip")
    queue.configure(QueueConfig(lease_seconds=lease_seconds, max_attempts=3, backoff_base=0.01))
    queue.seed(["item-1"])
    runs, started, go = tmp_path / "runs", tmp_path / "started", tmp_path / "go"
    command = (sys.executable, "-c", COMMAND, str(runs), str(started), str(go), str(exit_code))
    worker = Worker(
        WorkerConfig(
            redis_url=f"redis://{server.host}:{server.port}/0",
            redis_password=server.password,
            queue="blip",
            worker_id="w1",
            lease_seconds=lease_seconds,
            command=command,
            demo_work_seconds=0.0,
            redis_timeout=2.0,
        )
    )
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()), daemon=True)
    thread.start()
    _wait("the item's command to start", started.exists)
    server.kill()  # a crash at the moment of acknowledgement; AOF keeps every write
    go.touch()
    _wait("an undelivered acknowledgement", lambda: _undelivered(caplog) >= 1)
    server.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the worker did not finish after Redis came back"
    return server, queue, runs, codes


def test_completion_into_a_redis_restart_is_delivered_without_a_rerun(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, queue, runs, codes = _run_through_blip(
        tmp_path, caplog, exit_code=0, lease_seconds=60.0
    )
    try:
        assert codes == [EXIT_DONE]
        assert runs.read_text().splitlines() == ["item-1"]  # ran once
        stats = queue.stats()
        assert (stats.succeeded, stats.retries, stats.leased, stats.pending) == (1, 0, 0, 0)
        assert queue.succeeded_items() == {"item-1"}
        assert int(server.client().hget(queue.queue_keys.key("attempts"), "item-1")) == 1
    finally:
        server.close()


def test_completion_into_a_cluster_failover_is_delivered_without_a_rerun(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="queuejob.worker")
    with LocalRedisCluster() as cluster:
        client = cluster.client(socket_timeout=2.0)
        queue = LeaseQueue(client, "blip")
        queue.configure(QueueConfig(lease_seconds=60.0, max_attempts=3))
        queue.seed(["item-1"])
        key = queue.keys()[0]
        master = cluster.master_of(key)
        runs, started, go = tmp_path / "runs", tmp_path / "started", tmp_path / "go"
        command = (sys.executable, "-c", COMMAND, str(runs), str(started), str(go), "0")
        worker = Worker(
            WorkerConfig(
                redis_url=cluster.url,
                redis_password=cluster.password,
                queue="blip",
                worker_id="w1",
                lease_seconds=60.0,
                command=command,
                demo_work_seconds=0.0,
                redis_timeout=2.0,
                wait_replicas=1,
            )
        )
        codes: list[int] = []
        thread = threading.Thread(target=lambda: codes.append(worker.run()), daemon=True)
        thread.start()
        _wait("the item's command to start", started.exists)
        cluster.kill(master)
        go.touch()
        _wait("an undelivered acknowledgement", lambda: _undelivered(caplog) >= 1)
        promoted = cluster.wait_promoted(master, key)
        master.start()  # rejoins as the promoted node's replica: WAIT 1 can be met again
        cluster.wait_healthy()
        thread.join(DEADLINE)
        assert not thread.is_alive(), "the worker did not finish after the failover"
        assert codes == [EXIT_DONE]
        assert cluster.master_of(key) is promoted
        assert runs.read_text().splitlines() == ["item-1"]  # ran once
        stats = queue.stats()
        assert (stats.succeeded, stats.retries, stats.leased, stats.pending) == (1, 0, 0, 0)
        assert int(client.hget(queue.queue_keys.key("attempts"), "item-1")) == 1
        client.close()


def test_failure_into_a_redis_restart_is_recorded_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fail re-sent after the restart counts one failed attempt (one retry), not a lost
    lease: the retry runs as attempt 2, which fails again and again until max_attempts."""
    server, queue, runs, codes = _run_through_blip(
        tmp_path, caplog, exit_code=3, lease_seconds=60.0
    )
    try:
        assert codes == [EXIT_DONE]
        # 3 attempts, each a real failure (no lease expired): the dead letter's error is the
        # command's, not "lease expired".
        assert runs.read_text().splitlines() == ["item-1"] * 3
        letters = queue.dead_letters()
        assert [(d.item, d.attempts) for d in letters] == [("item-1", 3)]
        assert "exit code 3" in letters[0].error
        assert queue.stats().retries == 2
    finally:
        server.close()
