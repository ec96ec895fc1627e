"""Index-range seeding (``LeaseQueue.seed_range``) on one server and on a Redis Cluster.

- the items are the decimal indices, in order, each exactly once;
- a seed killed mid-way (SIGKILL of the seeding process) resumes at the cursor and adds every
  item exactly once; the range's items are known by the cursor, not listed in the ``seen`` set
  (a seed refuses to run when the cursor was deleted);
- items added with ``add``/``seed`` that collide with range items, before or after the range
  reaches them, are each in the queue once;
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
from workqueue.errors import QueueError
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
    pending = text(redis_client.lrange(queue.queue_keys.key("pending"), 0, -1))
    assert pending == [str(i) for i in range(count)]
    assert queue.stats().total == count
    assert not redis_client.exists(queue.queue_keys.key("seen"))  # deduplicated by the cursor
    # The cursor is the range's only record: with it deleted, seeding refuses (adds nothing).
    redis_client.hdel(queue.queue_keys.key("counters"), "range_next")
    with pytest.raises(QueueError, match="range cursor was deleted"):
        resumed.seed_range(0, count)
    assert redis_client.llen(queue.queue_keys.key("pending")) == count
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


def drain(queue: LeaseQueue) -> list[str]:
    """Lease and complete every item; returns the items in the order they were leased."""
    done: list[str] = []
    held = queue.lease("w", n=500)
    while held:
        done += [lease.item for lease in held]
        held = queue.complete_and_lease(held, "w", n=500).leases
    return done


def test_added_items_that_collide_with_range_items_are_in_the_queue_once(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    queue = LeaseQueue(redis_client, "collide")
    queue.configure(QueueConfig(lease_seconds=30))
    # Added before the range reaches them: "150" and "260" (range items later), "0150" and
    # "x" (never range items: not canonical decimals).
    assert queue.add(["150", "260", "0150", "x"]).added == 4
    assert queue.seed_range(0, 200) == 199  # "150" was there already
    # Added after: "5" and "199" are range items now; "200" is not yet.
    result = queue.add(["5", "199", "200"])
    assert (result.added, result.present) == (1, 2)
    assert queue.stats().total == 204  # 0..199, 200, 260, 0150, x
    # The range grows over 200 and 260: neither is pushed again.
    assert queue.seed_range(0, 300) == 98
    # Every index once, plus the two non-range items; the seen set holds only those two.
    assert queue.stats().total == 302
    assert sorted(text(list(redis_client.smembers(queue.queue_keys.key("seen"))))) == [
        "0150",
        "x",
    ]
    done = drain(queue)
    assert sorted(done) == sorted([str(i) for i in range(300)] + ["0150", "x"])
    stats = queue.stats()
    assert (stats.succeeded, stats.total, stats.pending) == (302, 302, 0)


def test_a_range_seeded_with_a_gap_is_completed_without_doubles(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    queue = LeaseQueue(redis_client, "gap")
    queue.configure(QueueConfig(lease_seconds=30))
    assert queue.seed_range(0, 100) == 100
    assert queue.seed_range(500, 100) == 100  # after a gap: remembered in the seen set
    assert queue.seed_range(0, 600) == 400  # fills 100..499, skips 500..599
    assert queue.seed_range(0, 600) == 0
    assert queue.stats().total == 600
    assert not redis_client.exists(queue.queue_keys.key("seen"))  # the range covers them now
    assert sorted(drain(queue), key=int) == [str(i) for i in range(600)]


def test_redrive_and_refusals_know_range_items(redis_client: redis.Redis | RedisCluster) -> None:
    queue = LeaseQueue(redis_client, "range-redrive")
    queue.configure(QueueConfig(lease_seconds=30, max_attempts=1, backoff_base=0.01))
    queue.seed_range(0, 3)
    first = queue.lease("w")[0]
    assert queue.fail(first, "boom").dead
    result = queue.redrive([first.item, "1", "3", "01"])
    assert result.redriven == 1
    assert result.skipped == {
        "1": "pending",
        "3": "not an item of this queue",
        "01": "not an item of this queue",
    }
    assert sorted(drain(queue), key=int) == ["0", "1", "2"]
