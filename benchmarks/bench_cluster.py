"""The queue on one server and on a Redis Cluster: what declaring keys and ``WAIT`` cost.

One run starts one redis-server and one Redis Cluster (3 masters + 3 replicas, loopback,
password) and drains queues with one worker thread calling ``complete_and_lease`` (the worker
hot path: one round trip per call), for batches of 1 and of 100 items:

- ``derived`` (the baseline): the scripts get only the config key and derive the other 11 names
  (the layout before cluster support; not correct during a cluster slot migration, see
  ``tests/queue/test_wq_cluster.py``);
- ``declared``: every key passed in ``KEYS`` (what ``LeaseQueue`` does);
- ``declared+WAIT1`` (cluster only): also ``WAIT 1`` after each call (``wait_replicas=1``).

Besides items/s (client and server time, as a worker sees it) it prints the CPU time the
server's main thread spent per call (``INFO cpu`` over ``INFO commandstats`` calls): CPU time,
not wall time, so the load of other processes on a shared machine disturbs it much less. Modes
run in interleaved rounds (default 5) and each keeps its best round. Ratios are to ``derived``
on the same backend and batch.
Run: ``.venv/bin/python benchmarks/bench_cluster.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import redis
from redis.cluster import RedisCluster

from localkube.redis_cluster import LocalRedisCluster
from localkube.redis_server import RedisServer
from workqueue.config import QueueConfig
from workqueue.redisqueue import LeaseQueue

# All as scripts (EVALSHA): the derived-key layout has no function form, and the comparison is
# about the keys, not about functions against scripts (make bench-queue measures that).
MODES: dict[str, dict[str, object]] = {
    "derived": {"declare_keys": False, "functions": False},
    "declared": {"functions": False},
    "declared+WAIT1": {"wait_replicas": 1, "functions": False},
}


def node_of(client: redis.Redis | RedisCluster, key: str) -> redis.Redis:
    """The server that runs the scripts of ``key``'s slot."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client


def _cpu(node: redis.Redis) -> float:
    """CPU seconds the server's main thread has used (user + system)."""
    info = node.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


def drain(
    client: redis.Redis | RedisCluster, name: str, items: int, batch: int, **opts: object
) -> tuple[float, float]:
    """Seconds to drain ``items`` items with complete_and_lease(n=batch) in one thread, and the
    server's CPU microseconds per EVALSHA (INFO cpu / commandstats) meanwhile."""
    queue = LeaseQueue(client, name, **opts)  # type: ignore[arg-type]
    queue.delete()
    queue.configure(QueueConfig(lease_seconds=60))
    queue.seed([f"i{i}" for i in range(items)])
    node = node_of(client, queue.keys()[0])
    cpu = _cpu(node)
    node.config_resetstat()
    started = time.perf_counter()
    handoff = queue.complete_and_lease([], "w", n=batch)
    done = 0
    while handoff.leases:
        done += len(handoff.leases)
        handoff = queue.complete_and_lease(handoff.leases, "w", n=batch)
    seconds = time.perf_counter() - started
    stats = node.info("commandstats")
    calls = sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_fcall"))
    usec = (_cpu(node) - cpu) * 1e6 / calls
    assert done == items and queue.stats().succeeded == items, queue.stats()
    queue.delete()
    queue.close()
    return seconds, usec


def measure(
    backends: dict[str, Callable[[], redis.Redis | RedisCluster]], rounds: int, items: int
) -> None:
    print(
        f"{'backend':8} {'batch':>5} {'mode':15} {'items/s':>10} {'vs derived':>10} "
        f"{'server CPU us/call':>18} {'vs derived':>10}"
    )
    for backend, make in backends.items():
        client = make()
        for batch in (1, 100):
            n = items if batch == 1 else items * 10
            modes = [m for m in MODES if backend == "cluster" or "WAIT" not in m]
            best: dict[str, float] = {}
            server: dict[str, float] = {}
            for _ in range(rounds):
                for mode in modes:
                    # The same name in every mode: the same slot, so the same master.
                    seconds, usec = drain(client, "bench", n, batch, **MODES[mode])
                    best[mode] = min(best.get(mode, seconds), seconds)
                    server[mode] = min(server.get(mode, usec), usec)
            base = n / best["derived"]
            for mode in modes:
                rate = n / best[mode]
                us = server[mode]
                print(
                    f"{backend:8} {batch:5d} {mode:15} {rate:10.0f} {rate / base:9.2f}x "
                    f"{us:18.1f} {us / server['derived']:9.2f}x"
                )
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 round, fewer items")
    args = parser.parse_args()
    rounds, items = (1, 1000) if args.quick else (5, 3000)
    with RedisServer() as server, LocalRedisCluster() as cluster:
        measure(
            {"server": server.client, "cluster": lambda: cluster.client(socket_timeout=5.0)},
            rounds,
            items,
        )


if __name__ == "__main__":
    main()
