"""One queue of a million items: seed time, memory per item, status refresh cost, drain rate.

One run starts one redis-server and one Redis Cluster (3 masters + 3 replicas, loopback,
password) and, on each backend:

1. **Seed** ``--items`` (default 1,000,000) items:
   - ``range``: ``LeaseQueue.seed_range`` (what the operator does for ``spec.itemsFrom.range``:
     Redis generates the indices, 2000 per script call, each chunk atomic with a resume cursor;
     the cursor also makes seeding idempotent: range items are not listed in the ``seen`` set,
     so a pending range item costs only its list entry);
   - ``list``: ``LeaseQueue.seed`` of the same items sent by the client (1000 per call; the path
     of ``spec.items`` and ``configMapKeyRef``);
   - ``docs`` (baseline): the Kubernetes docs' rediswq seeding, ``RPUSH`` 1000 items per round
     trip onto a plain list (no deduplication, nothing to resume);
   with items/s and ratios to ``docs``, and Redis ``used_memory`` per item (on the master
   holding the queue's slot) with the ratio to the plain list.
2. **Status refresh** cost: what the operator's refresh reads from Redis (``reap``, ``stats``,
   ``dead_letters(10)``: three script calls) on a queue of 1,000 items and on the queue of
   ``--items`` items (median of ``--refresh-calls`` interleaved calls, and the Redis commands each
   runs, from ``INFO commandstats``); a ratio near 1 means the cost does not grow with the items.
   For contrast (one server only), one server-side ``LRANGE`` of the whole pending list (what a
   status computed by scanning the queue would pay at least; on the cluster such a scan blocked
   the master past ``cluster-node-timeout`` and its replica took over, so it is not run there).
3. **Drain** rate with 1, 8 and 32 worker processes (``--workers``) doing no work per item,
   each process taking ``--drain-items`` / workers items **from the queue of ``--items`` items**
   (so the drain is measured on a queue of that size, over a sub-range of ``--drain-items``
   items, to keep the run practical):
   - ``single``: ``complete_and_lease(n=1)``, one round trip per item (the built-in worker
     leases one item at a time);
   - ``batch100``: ``complete_and_lease(n=100)``;
   - ``docs`` (baseline, one server only: its two lists would sit in different cluster slots,
     which ``RPOPLPUSH`` refuses): the docs' loop, 5 round trips per item.
   items/s from the start signal to the last worker's last item, ratio to ``docs`` (on the
   cluster to ``docs`` on the server).

The machine is shared (2 cores): figures vary between runs; ratios measured in the same run are
what to compare. Run: ``make bench-million`` or
``.venv/bin/python benchmarks/bench_million.py [--items N] [--drain-items N] [--quick]``;
``--seed-only`` runs step 1 alone (seed times and bytes per item, both backends).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import Any

import redis
from redis.cluster import RedisCluster

from localkube.redis_cluster import LocalRedisCluster
from localkube.redis_server import RedisServer
from workqueue.baseline import DocsWorkQueue
from workqueue.config import QueueConfig
from workqueue.connect import client_from_url
from workqueue.redisqueue import LeaseQueue

Client = redis.Redis | RedisCluster
WORKERS = (1, 8, 32)
DRAIN_MODES = ("docs", "single", "batch100")


def node_of(client: Client, key: str) -> redis.Redis:
    """The server holding ``key`` (on a cluster: its slot's master)."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client


def used_memory(node: redis.Redis) -> int:
    return int(node.info("memory")["used_memory"])


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


# -- 1. seeding ------------------------------------------------------------------------------


def seed_all(client: Client, items: int) -> dict[str, tuple[float, float]]:
    """Seed ``items`` items three ways; (seconds, bytes per item) per way. Keeps "range" (the
    queue ``million``) and "docs" (the list ``docs-million``) for the drain."""
    out: dict[str, tuple[float, float]] = {}
    queue = LeaseQueue(client, "million")
    queue.configure(QueueConfig(lease_seconds=300, max_attempts=3))
    node = node_of(client, queue.keys()[0])
    before = used_memory(node)
    seconds, added = timed(lambda: queue.seed_range(0, items))
    assert added == items and queue.stats().total == items, (added, queue.stats())
    out["range"] = (seconds, (used_memory(node) - before) / items)

    listed = LeaseQueue(client, "listed")
    listed.configure(QueueConfig(lease_seconds=300))
    payload = [str(i) for i in range(items)]
    node = node_of(client, listed.keys()[0])
    before = used_memory(node)
    seconds, added = timed(lambda: listed.seed(payload))
    assert added == items
    out["list"] = (seconds, (used_memory(node) - before) / items)
    listed.delete()

    if isinstance(client, redis.Redis):
        docs = DocsWorkQueue(client, "docs-million")
        before = used_memory(client)
        seconds, _ = timed(lambda: docs.seed(payload))
        out["docs"] = (seconds, (used_memory(client) - before) / items)
    return out


# -- 2. status refresh -----------------------------------------------------------------------


def refresh_reads(queue: LeaseQueue) -> None:
    """What ``queuejob.handlers.refresh`` reads from Redis on every tick."""
    queue.reap()
    queue.stats()
    queue.dead_letters(10)


def commands_of_refresh(queue: LeaseQueue, node: redis.Redis) -> dict[str, int]:
    node.config_resetstat()
    refresh_reads(queue)
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in node.info("commandstats").items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


def refresh_cost(client: Client, big: LeaseQueue, calls: int) -> dict[str, Any]:
    small = LeaseQueue(client, "thousand")
    small.configure(QueueConfig(lease_seconds=300, max_attempts=3))
    small.seed_range(0, 1000)
    for queue in (small, big):  # the same shape: a few leased items
        leases = queue.lease("refresh-probe", n=20)
        queue.complete_many(leases[:10])
        refresh_reads(queue)  # scripts loaded, config read
    times: dict[str, list[float]] = {"1k": [], "big": []}
    for _ in range(calls):
        for label, queue in (("1k", small), ("big", big)):
            seconds, _ = timed(lambda q=queue: refresh_reads(q))  # type: ignore[misc]
            times[label].append(seconds)
    small_cmds = commands_of_refresh(small, node_of(client, small.keys()[0]))
    big_cmds = commands_of_refresh(big, node_of(client, big.keys()[0]))
    scan_seconds, length = float("nan"), 0
    if isinstance(client, redis.Redis):
        # Not on the cluster: blocking a master that long (> cluster-node-timeout, 1 s here)
        # makes its replica take over, as a first run of this benchmark showed.
        scan_seconds, length = timed(
            lambda: client.eval("return #redis.call('LRANGE', KEYS[1], 0, -1)", 1, big.keys()[2])
        )
    small.delete()
    return {
        "1k": statistics.median(times["1k"]),
        "big": statistics.median(times["big"]),
        "same_commands": small_cmds == big_cmds,
        "commands": big_cmds,
        "scan": scan_seconds,
        "scan_items": int(length),
        "big_total": big.stats().total,
    }


# -- 3. drain --------------------------------------------------------------------------------


def _worker(url: str, mode: str, wid: str, quota: int, barrier: Barrier, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """One worker process: wait for the start signal, take ``quota`` items, report (n, last)."""
    client = client_from_url(url, socket_timeout=30)
    done = 0
    if mode == "docs":
        assert isinstance(client, redis.Redis)
        docs = DocsWorkQueue(client, "docs-million")
        client.ping()
        barrier.wait()
        while done < quota:
            item = docs.lease(lease_secs=300, block=False)
            if item is None:
                break
            docs.complete(item)
            done += 1
    else:
        queue = LeaseQueue(client, "million")
        _ = queue.config  # loaded before the clock starts
        batch = 1 if mode == "single" else 100
        barrier.wait()
        held = queue.lease(wid, min(batch, quota))
        while held:
            done += len(held)
            want = min(batch, quota - done)
            if want <= 0:
                queue.complete_many(held)
                break
            handoff = queue.complete_and_lease(held, wid, want)
            held = handoff.leases
    out.put((done, time.monotonic()))
    client.close()


def drain(url: str, mode: str, workers: int, items: int) -> tuple[int, float]:
    """Items drained by ``workers`` processes (each ``items // workers``) and the seconds."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(workers + 1)
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    quota = items // workers
    procs = [
        ctx.Process(target=_worker, args=(url, mode, f"w{i}", quota, barrier, out))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    start = time.monotonic()
    results = [out.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
    return sum(n for n, _ in results), max(last for _, last in results) - start


# -- main ------------------------------------------------------------------------------------


def run_backend(
    name: str, url: str, make: Callable[[], Client], args: argparse.Namespace
) -> dict[str, Any]:
    client = make()
    client.flushall() if isinstance(client, redis.Redis) else client.flushall(
        target_nodes=RedisCluster.PRIMARIES
    )
    print(f"\n== {name}: seeding {args.items:,} items", flush=True)
    seeds = seed_all(client, args.items)
    for way, (seconds, per_item) in seeds.items():
        print(
            f"  seed {way:6} {seconds:7.2f} s {args.items / seconds:>10,.0f} items/s"
            f" {per_item:7.1f} B/item",
            flush=True,
        )
    if args.seed_only:
        client.close()
        return {"seeds": seeds}
    drains: dict[tuple[str, int], tuple[int, float]] = {}
    modes = [m for m in DRAIN_MODES if m != "docs" or name == "server"]
    node = node_of(client, LeaseQueue(client, "million").keys()[0])
    grown, finished = 0, 0
    for workers in args.workers:
        for mode in modes:
            before = used_memory(node)
            done, seconds = drain(url, mode, workers, args.drain_items)
            drains[mode, workers] = (done, seconds)
            if mode != "docs":
                grown += used_memory(node) - before
                finished += done
            print(
                f"  drain {mode:8} {workers:2d} workers: {done:,} items in {seconds:6.2f} s "
                f"= {done / seconds:>9,.0f} items/s",
                flush=True,
            )
    per_done = grown / finished
    print(f"  memory: +{per_done:.1f} B per item that went from pending to succeeded", flush=True)
    big = LeaseQueue(client, "million")
    refresh = refresh_cost(client, big, args.refresh_calls)
    print(
        f"  refresh: 1k items {refresh['1k'] * 1e3:.3f} ms, {refresh['big_total']:,} items "
        f"{refresh['big'] * 1e3:.3f} ms; same Redis commands: {refresh['same_commands']} "
        f"{refresh['commands']}",
        flush=True,
    )
    client.close()
    return {"seeds": seeds, "drains": drains, "refresh": refresh, "per_done": per_done}


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    n = args.items
    print(f"\nSummary ({n:,} items; drain: {args.drain_items:,} items taken from that queue)")
    docs_seed = results["server"]["seeds"]["docs"]
    print("\nSeed               seconds      items/s  vs docs   B/item  vs docs list")
    for backend, res in results.items():
        for way, (seconds, per_item) in res["seeds"].items():
            print(
                f"  {backend:7} {way:6} {seconds:8.2f} {n / seconds:12,.0f} "
                f"{docs_seed[0] / seconds:7.2f}x {per_item:8.1f} {per_item / docs_seed[1]:9.2f}x"
            )
    if args.seed_only:
        return
    for backend, res in results.items():
        seeded = res["seeds"]["range"][1]
        print(
            f"  {backend:7} range queue: {seeded:.1f} B/item pending, "
            f"+{res['per_done']:.1f} B/item once succeeded (holder token kept for idempotent "
            f"acks) = {seeded + res['per_done']:.1f} B/item, "
            f"{(seeded + res['per_done']) * n / 2**20:,.0f} MiB for {n:,} finished items"
        )
    print("\nStatus refresh (reap + stats + dead_letters(10)), median per refresh")
    for backend, res in results.items():
        r = res["refresh"]
        contrast = (
            f"for contrast one LRANGE of all {r['scan_items']:,} pending: "
            f"{r['scan'] * 1e3:.1f} ms ({r['scan'] / r['big']:,.0f}x a refresh)"
            if r["scan_items"]
            else "(no LRANGE contrast on the cluster: it would block the master into a failover)"
        )
        print(
            f"  {backend:7} 1k items {r['1k'] * 1e3:7.3f} ms | {r['big_total']:,} items "
            f"{r['big'] * 1e3:7.3f} ms | ratio {r['big'] / r['1k']:5.2f}x | same commands "
            f"{r['same_commands']} | {contrast}"
        )
    print("\nDrain items/s (no-op items), ratio to the docs' loop on one server, same workers")
    header = "  backend workers " + " ".join(f"{m:>18}" for m in DRAIN_MODES)
    print(header)
    for backend, res in results.items():
        for workers in args.workers:
            base = results["server"]["drains"].get(("docs", workers))
            cells = []
            for mode in DRAIN_MODES:
                got = res["drains"].get((mode, workers))
                if got is None:
                    cells.append(f"{'n/a':>18}")
                    continue
                rate = got[0] / got[1]
                ratio = f"{rate * base[1] / base[0]:5.1f}x" if base else "   -"
                cells.append(f"{rate:>11,.0f} {ratio:>6}")
            print(f"  {backend:7} {workers:7d} " + " ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="items in the big queue")
    parser.add_argument(
        "--drain-items", type=int, default=32_000, help="items drained per measurement"
    )
    parser.add_argument("--workers", type=int, nargs="*", default=list(WORKERS))
    parser.add_argument("--refresh-calls", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100k items, 3200 drained")
    parser.add_argument("--seed-only", action="store_true", help="only step 1 (seed, B/item)")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.drain_items, args.refresh_calls = 100_000, 3200, 50
    used = (len(DRAIN_MODES) - 1) * len(args.workers) * args.drain_items  # "docs": own list
    if used > args.items:
        parser.error(f"--drain-items too large: the drains would take {used} of {args.items}")
    print(
        f"bench_million: {args.items:,} items; drain {args.drain_items:,} items per run with "
        f"{args.workers} worker processes; {args.refresh_calls} refresh calls per size"
    )
    results: dict[str, dict[str, Any]] = {}
    with RedisServer() as server:
        version = server.client().info("server")["redis_version"]
        print(f"redis-server {version}, one server and a 3+3 Redis Cluster on loopback")
        results["server"] = run_backend("server", server.url, server.client, args)
        server.client().flushall()
        with LocalRedisCluster() as cluster:
            results["cluster"] = run_backend(
                "cluster",
                cluster.url,
                lambda: cluster.client(decode_responses=False, socket_timeout=60),
                args,
            )
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
