"""The queue on a real Redis Cluster (3 masters + 3 replicas): sharding and live slot migration.

- queues spread over the masters, each queue's keys in one slot;
- why scripts declare all their keys: during a migration a script that derives key names
  fails half-way on the node ("non local key"), one that declares them waits (TRYAGAIN/ASK)
  and then runs whole on the new owner;
- a live migration of a queue's slot (CLUSTER SETSLOT + MIGRATE key by key, there and back)
  while worker processes drain it: every item succeeds, each exactly once.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from test_wq_crash import read_logs, start_worker

from fixtures.redis import Backend
from localkube.redis_cluster import LocalRedisCluster
from workqueue.config import QueueConfig
from workqueue.errors import QueueError
from workqueue.models import Lease
from workqueue.redisqueue import LeaseQueue
from workqueue.routing import Redirect, redirect_of

pytestmark = pytest.mark.timeout(180)


def other_master(cluster: LocalRedisCluster, key: str) -> int:
    source = cluster.master_of(key)
    return next(s for s in cluster.live_masters() if s is not source).port


def test_queues_spread_over_masters_each_in_one_slot(redis_cluster: LocalRedisCluster) -> None:
    client = redis_cluster.client()
    try:
        masters: collections.Counter[int] = collections.Counter()
        for i in range(24):
            queue = LeaseQueue(client, f"spread-{i}")
            queue.seed(["a", "b"])
            [lease] = queue.lease("w")
            queue.complete(lease)
            owners = {redis_cluster.master_of(key).port for key in queue.keys_in_use()}
            assert (
                len(owners) == 1
                and len({key_slot(k.encode()) for k in queue.queue_keys.ordered}) == 1
            )
            masters.update(owners)
            queue.close()
        assert len(masters) == 3, f"24 queues landed on {len(masters)} of 3 masters: {masters}"
    finally:
        client.flushdb()
        client.close()


def test_scripts_must_declare_their_keys_during_a_migration(
    redis_cluster: LocalRedisCluster,
) -> None:
    client = redis_cluster.client()
    name = "declare"
    declared = LeaseQueue(client, name)
    derived = LeaseQueue(client, name, declare_keys=False)
    declared.configure(QueueConfig(lease_seconds=60))
    declared.seed(["a", "b", "c"])
    [first] = declared.lease("w")
    source = redis_cluster.master_of(declared.keys()[0])
    target = redis_cluster.server_at(other_master(redis_cluster, declared.keys()[0]))
    slot = key_slot(declared.keys()[0].encode())
    src, dst = redis_cluster.node_client(source), redis_cluster.node_client(target)
    src_id, dst_id = redis_cluster.node_id(source), redis_cluster.node_id(target)
    try:
        # Half-way through a migration: only `pending` has moved.
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        pending = declared.queue_keys.key("pending")
        src.execute_command(
            "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "AUTH",
            redis_cluster.password, "KEYS", pending,
        )  # fmt: skip
        # Derived names: the script runs on the old owner (it has the config key) and fails
        # when it reaches `pending`, after it may have written other keys.
        with pytest.raises(QueueError, match="non local key"):
            derived.lease("w2")
        # Declared keys: Redis refuses to start the script (TRYAGAIN) until all keys are
        # together again; the call waits and then runs whole on the new owner.
        result: list[list[Lease] | BaseException] = []

        def lease() -> None:
            try:
                result.append(declared.complete_and_lease([first], "w3", n=2).leases)
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=lease)
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive(), f"the declared call did not wait: {result}"
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
            src.execute_command(
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "AUTH",
                redis_cluster.password, "KEYS", *keys,
            )  # fmt: skip
        for node in (dst, src):
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        thread.join(10)
        assert len(result) == 1 and isinstance(result[0], list), result
        assert sorted(lease.item for lease in result[0]) == ["b", "c"]
        stats = declared.stats()
        assert (stats.succeeded, stats.leased, stats.pending) == (1, 2, 0), stats
    finally:
        for node in (dst, src):
            node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        redis_cluster.wait_healthy()
        client.flushdb()
        client.close()


def test_live_slot_migration_while_workers_drain(
    redis_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    backend = Backend("cluster", cluster=redis_cluster)
    client: RedisCluster = redis_cluster.client()
    name = "migrating"
    items = [f"item-{i:04d}" for i in range(1500)]
    queue = LeaseQueue(client, name)
    queue.configure(QueueConfig(lease_seconds=30, max_attempts=3))
    assert queue.seed(items) == len(items)
    key = queue.keys()[0]
    slot = key_slot(key.encode())
    home = redis_cluster.master_of(key)
    away = redis_cluster.server_at(other_master(redis_cluster, key))
    workers = [start_worker(backend, name, f"w{i}", 1 + i % 3, 0.002, tmp_path) for i in range(4)]
    moves: list[tuple[int, int, float]] = []
    try:
        for target, threshold in ((away, 300), (home, 800)):
            deadline = time.monotonic() + 60
            while queue.stats().succeeded < threshold:
                assert time.monotonic() < deadline, queue.stats()
                time.sleep(0.02)
            started = time.monotonic()
            moved = redis_cluster.migrate_slot(slot, target, pause=0.05)
            moves.append((target.port, moved, time.monotonic() - started))
            assert redis_cluster.master_of_slot(slot) is target
        for proc in workers:
            proc.wait(timeout=90)
            assert proc.returncode == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stats = queue.stats()
    assert (stats.succeeded, stats.pending, stats.leased, stats.dead) == (1500, 0, 0, 0), stats
    assert queue.succeeded_items() == set(items)
    events = read_logs(tmp_path)
    done = collections.Counter(e[1] for e in events if e[0] == "done")
    # Each item's success was recorded exactly once, and no acknowledgement was uncertain
    # (redirections are answered instead of running a script, so they are safe to follow).
    assert set(done) == set(items) and max(done.values()) == 1, done.most_common(3)
    assert not [e for e in events if e[0] in ("stale", "uncertain")]
    starts = collections.Counter(e[1] for e in events if e[0] == "start")
    print(
        f"moves (port, keys, seconds): {moves}; items started twice: {sum(starts.values()) - 1500}"
    )
    assert all(moved >= 5 for _, moved, _ in moves), moves
    client.flushdb()
    client.close()


def test_redirect_replies_name_the_node_to_go_to() -> None:
    ask = redirect_of(redis.exceptions.AskError("3999 127.0.0.1:7001"))
    moved = redirect_of(redis.exceptions.MovedError("3999 127.0.0.1:7002"))
    assert ask == Redirect("ask", "127.0.0.1:7001")
    assert moved == Redirect("moved", "127.0.0.1:7002")
    assert redirect_of(redis.exceptions.TryAgainError("TRYAGAIN")) == Redirect("again")
    assert redirect_of(redis.exceptions.ClusterDownError("CLUSTERDOWN")) == Redirect("down")
    # A master demoted to replica refuses the script's first write: nothing ran, ask again.
    assert redirect_of(redis.exceptions.ReadOnlyError("READONLY")) == Redirect("moved")
    assert redirect_of(redis.exceptions.ResponseError("WRONGTYPE x")) is None
