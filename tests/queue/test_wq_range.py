"""Index-range seeding (``LeaseQueue.seed_range``) on one server and on a Redis Cluster.

- the items are the decimal indices, in order, each exactly once;
- a seed killed mid-way (SIGKILL of the seeding process) resumes at the cursor and adds every
  item exactly once, also when the cursor is lost;
- what a status refresh reads (reap, stats, dead letters) runs the same Redis commands, the same
  number of times, whatever the number of items (counters, not scans).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from fixtures.redis import Backend
from workqueue.config import QueueConfig
from workqueue.redisqueue import LeaseQueue

pytestmark = pytest.mark.timeout(180)

#: Commands whose cost grows with the size of a key when run over all of it.
SCANS = {
    "lrange",
    "smembers",
    "hgetall",
    "hkeys",
    "hvals",
    "sscan",
    "hscan",
    "zscan",
    "keys",
    "scan",
    "sort",
    "lpos",
    "sinter",
    "sunion",
    "sdiff",
    "zrange",
    "zrangebyscore",
}


def text(values: list[bytes] | list[str]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def node_of(client: redis.Redis | RedisCluster, key: str) -> redis.Redis:
    """The server holding ``key`` (on a cluster: its slot's master)."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client


def test_seed_range_seeds_the_decimal_indices_in_order_once(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    queue = LeaseQueue(redis_client, "range")
    queue.configure(QueueConfig(lease_seconds=30))
    seen: list[tuple[int, int]] = []
    assert queue.seed_range(7, 2500, chunk=1000, progress=lambda d, n: seen.append((d, n))) == 2500
    assert seen == [(0, 2500), (1000, 2500), (2000, 2500), (2500, 2500)]
    pending = text(redis_client.lrange(queue.queue_keys.key("pending"), 0, -1))
    assert pending == [str(i) for i in range(7, 2507)]
    assert queue.range_cursor() == 2507
    stats = queue.stats()
    assert (stats.total, stats.pending) == (2500, 2500)
    assert [lease.item for lease in queue.lease("w", n=3)] == ["7", "8", "9"]
    # Seeding again (a resumed handler) adds nothing, whatever the chunking.
    assert queue.seed_range(7, 2500, chunk=333) == 0
    assert queue.stats().total == 2500


def test_seed_range_rejects_bad_arguments(redis_client: redis.Redis | RedisCluster) -> None:
    queue = LeaseQueue(redis_client, "range-args")
    for start, count in ((-1, 5), (0, 0), (True, 3)):
        with pytest.raises(ValueError, match="start >= 0 and count >= 1"):
            queue.seed_range(start, count)
    assert queue.stats().total == 0


SEEDER = """
import sys
from workqueue.connect import client_from_url
from workqueue.redisqueue import LeaseQueue
queue = LeaseQueue(client_from_url(sys.argv[1]), "resume")
def progress(done, count):
    print(done, flush=True)
queue.seed_range(0, int(sys.argv[2]), chunk=int(sys.argv[3]), progress=progress)
print("finished", flush=True)
"""


def test_seed_killed_midway_resumes_with_no_item_lost_or_duplicated(
    redis_backend: Backend, redis_client: redis.Redis | RedisCluster, tmp_path: Path
) -> None:
    count, chunk = 300_000, 1000
    queue = LeaseQueue(redis_client, "resume")
    queue.configure(QueueConfig(lease_seconds=30))
    script = tmp_path / "seeder.py"
    script.write_text(SEEDER)
    seeder = subprocess.Popen(
        [sys.executable, str(script), redis_backend.url, str(count), str(chunk)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert seeder.stdout is not None
    for line in seeder.stdout:
        if line.strip() != "finished" and int(line) >= 20 * chunk:
            break
    seeder.kill()  # SIGKILL: between two chunks or in the middle of a round trip
    seeder.wait(timeout=30)
    cursor = queue.range_cursor()
    assert cursor is not None and 20 * chunk <= cursor < count, cursor
    seeded = queue.stats().total
    assert seeded == cursor  # the cursor moves in the same atomic step as its chunk's items

    # Resumed by a new process (the operator restarted): starts at the cursor.
    resumed = LeaseQueue(redis_backend.client(), "resume")
    progress: list[int] = []
    assert resumed.seed_range(0, count, chunk=10_000, progress=lambda d, n: progress.append(d)) == (
        count - seeded
    )
    assert progress[0] == cursor
    # Even with the cursor lost, seeding again adds nothing (every item is remembered).
    redis_client.hdel(queue.queue_keys.key("counters"), "range_next")
    assert resumed.seed_range(0, count) == 0
    pending = text(redis_client.lrange(queue.queue_keys.key("pending"), 0, -1))
    assert pending == [str(i) for i in range(count)]
    assert queue.stats().total == count
    resumed.client.close()


def refresh_commands(queue: LeaseQueue, node: redis.Redis) -> dict[str, int]:
    """Redis commands (and calls) run by what the operator's status refresh reads: reap, stats
    and the first 10 dead letters (``queuejob.handlers.refresh``)."""
    node.config_resetstat()
    queue.reap()
    queue.stats()
    queue.dead_letters(10)
    stats = node.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


def test_status_refresh_runs_the_same_commands_at_any_size(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    runs = {}
    for count in (1_000, 100_000):
        queue = LeaseQueue(redis_client, f"size-{count}")
        queue.configure(QueueConfig(lease_seconds=30, max_attempts=1))
        queue.seed_range(0, count)
        leases = queue.lease("w", n=100)
        queue.complete_many(leases[:50])
        for lease in leases[50:60]:
            queue.fail(lease, "boom")  # dead letters (max_attempts=1)
        node = node_of(redis_client, queue.keys()[0])
        refresh_commands(queue, node)  # loads the scripts (SCRIPT LOAD after NOSCRIPT) once
        runs[count] = refresh_commands(queue, node)
        assert queue.stats().total == count
    assert runs[1_000] == runs[100_000]
    assert "evalsha" in runs[1_000]
    # Reading the first 10 dead letters and the due timers use ranges bounded by LIMIT / 10,
    # never a whole key: no command that scans all of a key's items.
    assert set(runs[1_000]) - {"zrange", "zrangebyscore"} == set(runs[1_000]) - SCANS
