"""Real worker processes: SIGKILL a third of them mid-item; every item succeeds exactly once.

Also: a poison item consumed by real workers ends dead-lettered after max attempts.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from fixtures.redis import Backend
from localkube.redis_server import RedisServer
from workqueue.config import QueueConfig
from workqueue.redisqueue import LeaseQueue

WORKER = Path(__file__).with_name("wq_crash_worker.py")


def start_worker(
    backend: Backend | RedisServer,
    queue: str,
    worker_id: str,
    batch: int,
    work: float,
    logs: Path,
    wait_replicas: int = 0,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            backend.url,
            queue,
            worker_id,
            str(batch),
            str(work),
            str(logs / f"{worker_id}.log"),
            str(wait_replicas),
        ],
    )


def read_logs(logs: Path) -> list[list[str]]:
    return [line.split() for path in logs.glob("*.log") for line in path.read_text().splitlines()]


@pytest.mark.timeout(120)
def test_sigkilled_workers_lose_nothing_and_every_item_succeeds_once(
    redis_backend: Backend, redis_client: redis.Redis, tmp_path: Path
) -> None:
    items = [f"item-{i:04d}" for i in range(2000)]
    queue = LeaseQueue(redis_client, "crash")
    queue.configure(QueueConfig(lease_seconds=1.5, max_attempts=5))
    assert queue.seed(items) == 2000
    workers = {
        f"w{i}": start_worker(redis_backend, "crash", f"w{i}", 1 if i % 2 else 4, 0.01, tmp_path)
        for i in range(9)
    }
    killed: dict[str, list[str]] = {}
    deadline = time.monotonic() + 90
    try:
        for threshold in (300, 700, 1100):
            # Kill a worker that holds a lease right now: it dies mid-item.
            while time.monotonic() < deadline:
                stats = queue.stats()
                holders = {f.worker_id for f in queue.in_flight(100)} - killed.keys()
                if stats.succeeded >= threshold and holders:
                    # Freeze the victim, then read what it holds: it cannot finish an item
                    # between that read and its death.
                    victim = sorted(holders)[0]
                    workers[victim].send_signal(signal.SIGSTOP)
                    held = [f.item for f in queue.in_flight(100) if f.worker_id == victim]
                    if not held:
                        workers[victim].send_signal(signal.SIGCONT)
                        continue
                    workers[victim].send_signal(signal.SIGKILL)
                    workers[victim].wait()
                    killed[victim] = held
                    break
                time.sleep(0.01)
        assert len(killed) == 3, f"could not kill 3 workers mid-item: {killed}"
        assert all(killed.values()), f"a killed worker held no lease: {killed}"
        for worker_id, proc in workers.items():
            if worker_id not in killed:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                assert proc.returncode == 0, f"worker {worker_id} exited with {proc.returncode}"
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    stats = queue.stats()
    assert stats.succeeded == 2000, stats
    assert (stats.pending, stats.delayed, stats.leased, stats.dead) == (0, 0, 0, 0), stats
    assert queue.done()
    assert queue.succeeded_items() == set(items)
    events = read_logs(tmp_path)
    done = collections.Counter(e[1] for e in events if e[0] == "done")
    assert max(done.values()) == 1, "an item was acknowledged as done twice"
    # An item without a "done" line was completed by a worker killed right after its ack.
    killed_starts = {e[1] for e in events if e[0] == "start" and e[2].endswith(tuple(killed))}
    assert set(items) - set(done) <= killed_starts
    # The items the killed workers held came back and were finished by someone else.
    for victim, held in killed.items():
        for item in held:
            finishers = [e for e in events if e[0] == "done" and e[1] == item]
            assert finishers and not finishers[0][2].endswith(f":{victim}")
    retried = {e[1] for e in events if e[0] == "start" and int(e[3]) >= 2}
    assert retried >= {item for held in killed.values() for item in held}
    assert stats.retries >= len(retried)


@pytest.mark.timeout(60)
def test_poison_item_is_dead_lettered_by_real_workers(
    redis_backend: Backend, redis_client: redis.Redis, tmp_path: Path
) -> None:
    queue = LeaseQueue(redis_client, "poison")
    queue.configure(
        QueueConfig(
            lease_seconds=5, max_attempts=3, backoff_base=0.05, backoff_cap=0.2, backoff_jitter=0.5
        )
    )
    queue.seed([*(f"ok-{i}" for i in range(30)), "poison-pill"])
    workers = [start_worker(redis_backend, "poison", f"p{i}", 1, 0.0, tmp_path) for i in range(3)]
    for proc in workers:
        proc.wait(timeout=50)
        assert proc.returncode == 0
    stats = queue.stats()
    assert (stats.succeeded, stats.dead, stats.retries) == (30, 1, 2)
    [letter] = queue.dead_letters()
    assert letter == ("poison-pill", "poison item failed on attempt 3", 3)
    failures = [e for e in read_logs(tmp_path) if e[0] == "failed"]
    assert len(failures) == 3
