"""What one scrape of the operator's ``/metrics`` costs with many QueueJobs: built whole by
prometheus_client against streamed in chunks (``queuejob.exposition``).

``.venv/bin/python benchmarks/bench_metrics.py [--queues 10000] [--rounds 3]`` (a benchmark: it
prints figures and ratios, it asserts nothing). For each way of rendering, a fresh Python
process builds the operator's ``Metrics`` with ``--queues`` QueueJob queues observed (figures,
workers and a per-item duration histogram each, as status refreshes leave them) and then
serves ``--rounds`` scrapes over HTTP on loopback (the endpoint the operator runs, read by
urllib in the same process, chunk by chunk as a scraper reads it). Printed per way: the
text's size, the wall time of a scrape (best and median), the process' RSS before the first
scrape, after the scrapes and its peak (``VmHWM``), and the ratios streamed/built-whole.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(mode: str, queues: int, rounds: int) -> None:
    """Runs in the measured process: build the metrics, scrape, print one JSON line."""
    from prometheus_client.exposition import start_http_server

    from queuejob import exposition
    from queuejob.metrics import Metrics
    from workqueue.durations import BOUNDS, DurationHistogram

    metrics = Metrics(concurrency_limit=10)
    for handler in ("reconcile", "refresh", "cleanup"):
        metrics.declare_handler(f"handler:{handler}")
    for i in range(queues):
        name = f"tenant-{i % 50:02d}/queuejob-{i:05d}"
        counts = tuple((i + b) % 7 for b in range(len(BOUNDS) + 1))
        metrics.observe_queue(
            name,
            pending=i % 5,
            delayed=i % 3,
            leased=i % 4,
            succeeded=i,
            dead=i % 2,
            total=2 * i + 9,
            retries=i % 11,
            durations=DurationHistogram(counts, 0.25 * sum(counts)),
        )
        metrics.observe_workers(name, desired=4, current=i % 5)
    if mode == "whole":
        server, _ = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    else:
        server = exposition.serve(metrics.app(), "127.0.0.1", 0)
    port = server.server_port
    before = _status_kib("VmRSS")
    seconds, size = [], 0
    for _ in range(rounds):
        began = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=300) as reply:
            size = 0
            while part := reply.read(64 * 1024):
                size += len(part)
        seconds.append(time.perf_counter() - began)
    after = _status_kib("VmRSS")
    print(
        json.dumps(
            {
                "size": size,
                "seconds": seconds,
                "rss_before": before,
                "rss_after": after,
                "hwm": _status_kib("VmHWM"),
            }
        )
    )


def run(mode: str, queues: int, rounds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--queues",
            str(queues),
            "--rounds",
            str(rounds),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=("whole", "streamed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.queues, args.rounds)
        return 0
    print(f"/metrics with {args.queues} QueueJob queues, {args.rounds} scrapes per process")
    results = {}
    for mode in ("whole", "streamed"):
        print(f"  {mode}: building and scraping ...", flush=True)
        results[mode] = r = run(mode, args.queues, args.rounds)
        mib = 1024.0
        print(
            f"  {mode:>8}: {r['size'] / 1e6:.1f} MB of text; scrape best "
            f"{min(r['seconds']):.2f} s, median {statistics.median(r['seconds']):.2f} s; RSS "
            f"{r['rss_before'] / mib:.1f} MiB before, {r['rss_after'] / mib:.1f} after, peak "
            f"{r['hwm'] / mib:.1f} (+{(r['hwm'] - r['rss_before']) / mib:.1f} MiB)"
        )
    w, s = results["whole"], results["streamed"]
    time_ratio = min(s["seconds"]) / min(w["seconds"])
    growth = (s["rss_after"] - s["rss_before"]) / max(1, w["rss_after"] - w["rss_before"])
    peak = (s["hwm"] - s["rss_before"]) / max(1, w["hwm"] - w["rss_before"])
    print(
        f"ratio streamed/whole: scrape time {time_ratio:.2f}x, RSS growth by the scrapes "
        f"{growth:.2f}x, peak above the start {peak:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
