"""The built-in worker under faults, as a real process on a real redis-server (no cluster).

- a SIGKILLed worker takes its per-item command and the command's children with it;
- a worker that loses its lease (paused past the lease, the item re-leased by someone else)
  kills the item's command and reports no result for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from localkube.redis_server import RedisServer
from workqueue.config import QueueConfig
from workqueue.redisqueue import LeaseQueue

pytestmark = pytest.mark.timeout(60)
T = TypeVar("T")

#: Writes its pid and its background child's pid, then appends a tick every 50 ms until killed.
TICKING = (
    'echo $$ > "$PIDS/$QUEUEJOB_ITEM.cmd"; sleep 300 & echo $! > "$PIDS/$QUEUEJOB_ITEM.child"; '
    'while :; do echo tick >> "$PIDS/$QUEUEJOB_ITEM.ticks"; sleep 0.05; done'
)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone (FileNotFoundError), or gone while read (ProcessLookupError)
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[Path]:
    """A directory for the commands' pid files; anything still alive is killed afterwards."""
    directory = tmp_path / "pids"
    directory.mkdir()
    yield directory
    for path in directory.glob("*.c*"):
        pid = read_pid(path)
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


def start_worker(
    server: RedisServer, queue: str, command: str, pids: Path, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "QUEUEJOB_REDIS_URL": server.url,
        "QUEUEJOB_QUEUE": queue,
        "QUEUEJOB_LEASE_SECONDS": "1",
        "QUEUEJOB_WORKER_ID": "w1",
        "QUEUEJOB_ITEM_COMMAND": json.dumps(["sh", "-c", command]),
        "PIDS": str(pids),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "queuejob.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def command_pids(pids: Path, item: str) -> tuple[int, int]:
    def both() -> tuple[int, int] | None:
        cmd, child = read_pid(pids / f"{item}.cmd"), read_pid(pids / f"{item}.child")
        return (cmd, child) if cmd and child else None

    return wait_for(f"the command of {item!r} to start", both)


def test_sigkilled_worker_takes_its_command_and_grandchild_along(
    redis_server: RedisServer, redis_client: redis.Redis, pids: Path, tmp_path: Path
) -> None:
    queue = LeaseQueue(redis_client, "killed")
    queue.configure(QueueConfig(lease_seconds=1.0))
    queue.seed(["k1"])
    worker = start_worker(redis_server, "killed", TICKING, pids, tmp_path / "worker.log")
    try:
        cmd, child = command_pids(pids, "k1")
        assert alive(cmd) and alive(child)
        worker.kill()  # SIGKILL: no handler of the worker runs
        worker.wait()
        killed_at = time.monotonic()
        wait_for("the command and its child to die", lambda: not alive(cmd) and not alive(child))
        print(f"command and child gone {time.monotonic() - killed_at:.2f}s after the SIGKILL")
        assert time.monotonic() - killed_at < 2.0
        ticks = (pids / "k1.ticks").read_text()
        time.sleep(0.3)
        assert (pids / "k1.ticks").read_text() == ticks, "something still writes"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_worker_that_loses_its_lease_kills_the_command_and_reports_nothing(
    redis_server: RedisServer, redis_client: redis.Redis, pids: Path, tmp_path: Path
) -> None:
    queue = LeaseQueue(redis_client, "lost")
    queue.configure(QueueConfig(lease_seconds=1.0, max_attempts=5))
    queue.seed(["l1"])
    log = tmp_path / "worker.log"
    worker = start_worker(redis_server, "lost", TICKING, pids, log)
    try:
        cmd, child = command_pids(pids, "l1")
        # Freeze the worker (not its command: that runs under the item guard, in another
        # session) past its lease, and let someone else take the item meanwhile.
        os.kill(worker.pid, signal.SIGSTOP)
        thief = wait_for(
            "the item to be re-leased",
            lambda: queue.reap() and queue.lease("thief", lease_seconds=30),
            timeout=10,
        )
        assert [lease.item for lease in thief] == ["l1"]
        assert alive(cmd) and alive(child), "the command must not depend on the worker running"
        os.kill(worker.pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_for("the command and its child to die", lambda: not alive(cmd) and not alive(child))
        print(f"command gone {time.monotonic() - resumed:.2f}s after the worker resumed")
        assert time.monotonic() - resumed < 3.0
        wait_for(
            "the worker to log the lost lease", lambda: "no result is reported" in log.read_text()
        )

        # No result was reported: the thief still holds the item, nothing succeeded or failed.
        [held] = queue.in_flight()
        assert (held.item, held.worker_id) == ("l1", "thief")
        stats = queue.stats()
        assert (stats.leased, stats.succeeded, stats.dead) == (1, 0, 0)
        assert stats.retries == 1  # the expired lease's re-queue, no failure from the worker
        assert worker.poll() is None, "the worker goes on after losing a lease"

        queue.complete(thief[0])
        assert worker.wait(timeout=20) == 0  # the queue is done now
        assert "lease lost" in log.read_text()
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
            worker.kill()
            worker.wait()
