"""The single-item worker hot path: Redis server cost of one ``complete_and_lease(n=1)``.

Two measurements, for comparing one version of the queue code against another on one machine:

- ``commandstats`` (default): for each worker count, ``--rounds`` drains of a queue by worker
  processes looping on ``complete_and_lease(n=1)`` (``benchmarks/bench_queue.py``'s ``single``
  mode, reused as is); prints the server microseconds per item (``INFO commandstats`` of
  ``fcall``), the redis-server CPU per item and the items/s of each round, then the minimum
  and the median. Other load on the machine inflates these figures: compare minima and
  medians of runs taken in the same session.
- ``--callgrind``: starts a redis-server under valgrind's callgrind, collecting only inside
  ``fcallCommand`` (the function calls, nothing else), drains ``--items`` items with one
  worker and prints the instructions per call. Deterministic up to hash-table and allocator
  effects; needs ``valgrind`` (``apt-get install valgrind``), which nothing in CI requires.

Run: ``.venv/bin/python benchmarks/bench_hotpath.py [--workers 1 4] [--rounds 5]`` or
``... --callgrind [--items 5000]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from localkube.redis_server import RedisServer, find_redis_server
from workqueue.config import QueueConfig
from workqueue.redisqueue import LeaseQueue

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_queue


def commandstats(workers: list[int], rounds: int, items: int) -> None:
    print(f"single-item complete_and_lease, {items} items per round, {rounds} rounds")
    with RedisServer() as server:
        for count in workers:
            runs = [bench_queue.measure(server, "single", count, items) for _ in range(rounds)]
            usec = [run.usec_per_item for run in runs]
            cpu = [run.cpu_usec_per_item for run in runs]
            rate = [run.rate for run in runs]
            print(
                f"{count} workers: server us/call min {min(usec):.2f} median "
                f"{statistics.median(usec):.2f} | cpu us/item min {min(cpu):.2f} median "
                f"{statistics.median(cpu):.2f} | items/s max {max(rate):,.0f} median "
                f"{statistics.median(rate):,.0f}"
            )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def callgrind(items: int) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind not found (apt-get install valgrind)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.Popen(
            [
                valgrind,
                "--tool=callgrind",
                "--toggle-collect=fcallCommand",
                f"--callgrind-out-file={out}",
                find_redis_server(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port, socket_timeout=60)
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            queue = LeaseQueue(client, "hotpath")
            queue.configure(QueueConfig(lease_seconds=600, max_attempts=3))
            queue.seed([f"item-{i:07d}" for i in range(items + 1)])
            held = queue.lease("w")  # one FCALL
            calls = 1
            while held:
                held = queue.complete_and_lease(held, "w").leases
                calls += 1
            sender = getattr(queue, "_durations", None)  # absent before the worker-side durations
            flushed = sender.flushes if sender is not None else 0
            queue.close()
            fcalls = int(client.info("commandstats")["cmdstat_fcall"]["calls"])
            client.shutdown(nosave=True)
        except redis.exceptions.ConnectionError:
            pass
        finally:
            proc.wait(timeout=120)
        text = out.read_text()
    match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if match is None:
        raise SystemExit("no totals in the callgrind output")
    total = int(match.group(1))
    print(
        f"callgrind: {total:,} instructions in fcallCommand over {fcalls} FCALLs "
        f"({calls} worker calls, {flushed} durations sends): {total / fcalls:,.0f} per call"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--callgrind", action="store_true", help="instructions per call")
    args = parser.parse_args(argv)
    if args.callgrind:
        callgrind(min(args.items, 20_000))
    else:
        commandstats(args.workers, args.rounds, args.items)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
