"""Per-item durations (lease to completion), counted by the worker's LeaseQueue and sent to Redis
with its calls, on one server and on a Redis Cluster; their export as
``workqueue_work_duration_seconds`` and in ``kubectl queuejob status``.

- each completion adds its item once to the bucket of its duration (queue clock), whichever
  call completes it (complete, complete_many, complete_and_lease), and a re-sent completion
  (same token) is not counted again;
- a worker sends its histogram at most once per interval, and all of it when a lease finds
  nothing or on close; a worker that dies loses only the durations it had not sent, no item;
- the Lua bucket choice and the Python bucket list agree;
- the operator exports the queue's histogram under the QueueJob's name beside the handlers'.
"""

from __future__ import annotations

import pytest
import redis
from prometheus_client import generate_latest
from redis.cluster import RedisCluster

from localkube.redis_server import RedisServer
from queuejob.metrics import Metrics
from queuejob_kubectl import render
from workqueue import durations
from workqueue.config import QueueConfig
from workqueue.durations import DurationHistogram
from workqueue.redisqueue import LeaseQueue
from workqueue.scripts import source


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def test_each_completion_is_recorded_once_in_its_bucket(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    clock = Clock()
    queue = LeaseQueue(redis_client, "durations", clock=clock)
    queue.configure(QueueConfig(lease_seconds=3600))
    queue.seed([f"i{n}" for n in range(8)])
    assert queue.durations() == DurationHistogram.empty()

    first = queue.lease("w")  # single complete after 0.3 s -> bucket 0.5
    clock.now += 0.3
    queue.complete(first[0])
    queue.complete(first[0])  # re-sent (same token): accepted, not counted again
    batch = queue.lease("w", n=3)  # complete_many after 4 s -> bucket 5
    clock.now += 4
    assert queue.complete_many(batch) == {}
    held = queue.lease("w")  # complete_and_lease after 100 s -> bucket 120
    clock.now += 100
    held = queue.complete_and_lease(held, "w", n=4).leases
    clock.now += 7200  # past the last bound -> +Inf
    assert queue.complete_and_lease(held, "w").stale == {}

    hist = queue.durations()
    by_bound = dict(zip((*durations.BOUND_FIELDS, "+Inf"), hist.counts, strict=True))
    assert {k: v for k, v in by_bound.items() if v} == {"0.5": 1, "5": 3, "120": 1, "+Inf": 3}
    assert hist.total == 8 == queue.stats().succeeded
    assert hist.sum_seconds == pytest.approx(0.3 + 3 * 4 + 100 + 3 * 7200, abs=0.01)
    assert hist.cumulative()[-1] == (float("inf"), 8)
    # p50: the 4th of 8 items, the last of bucket (2.5, 5]: 5 s.
    assert hist.quantile(0.5) == pytest.approx(5.0)
    assert hist.quantile(0.95) == durations.BOUNDS[-1]  # in +Inf: the last finite bound
    assert hist.summary()["count"] == 8


def test_lua_and_python_buckets_match(redis_server: RedisServer) -> None:
    """The Lua bucket choice (an if-chain in scripts/lib.lua) gives, for a duration at each
    bound and just above it, the field of the bound and the next one, as durations.BOUNDS."""
    lua = source("complete")
    start = lua.index("local function duration_field")
    body = lua[start : lua.index("\nend\n", start) + 5]
    client = redis_server.client()
    try:
        probe = body + "\nreturn duration_field(tonumber(ARGV[1]))"
        fields = [*durations.BOUND_FIELDS, "+Inf"]
        for i, bound in enumerate(durations.BOUNDS):
            assert client.eval(probe, 0, repr(bound)) == fields[i]
            assert client.eval(probe, 0, repr(bound * 1.001)) == fields[i + 1]
        assert client.eval(probe, 0, "0") == "0.005"
    finally:
        client.close()


def test_quantiles_interpolate_within_a_bucket() -> None:
    counts = [0] * (len(durations.BOUNDS) + 1)
    counts[durations.BOUND_FIELDS.index("1")] = 10  # ten items in (0.5, 1]
    hist = DurationHistogram(tuple(counts), 7.5)
    assert hist.quantile(0.5) == pytest.approx(0.75)
    assert hist.quantile(0.95) == pytest.approx(0.975)
    assert hist.summary() == {"count": 10, "p50Seconds": 0.75, "p95Seconds": 0.975,
                              "meanSeconds": 0.75}  # fmt: skip
    with pytest.raises(ValueError, match="q must be"):
        hist.quantile(1.0)


def test_the_operator_exports_the_queue_histogram_beside_the_handlers() -> None:
    metrics = Metrics(concurrency_limit=4)
    metrics.declare_handler("handler:reconcile")
    metrics.work_duration.labels("handler:reconcile").observe(0.2)
    counts = [0] * (len(durations.BOUNDS) + 1)
    counts[durations.BOUND_FIELDS.index("5")] = 2
    counts[-1] = 1
    metrics.observe_queue(
        "ns/job",
        pending=0,
        delayed=0,
        leased=0,
        succeeded=3,
        dead=0,
        total=3,
        retries=0,
        durations=DurationHistogram(tuple(counts), 9000.0),
    )
    text = generate_latest(metrics.registry).decode()
    assert text.count("# TYPE workqueue_work_duration_seconds histogram") == 1
    assert 'workqueue_work_duration_seconds_bucket{le="2.5",name="ns/job"} 0.0' in text
    assert 'workqueue_work_duration_seconds_bucket{le="5.0",name="ns/job"} 2.0' in text
    assert 'workqueue_work_duration_seconds_bucket{le="+Inf",name="ns/job"} 3.0' in text
    assert 'workqueue_work_duration_seconds_count{name="ns/job"} 3.0' in text
    assert 'workqueue_work_duration_seconds_sum{name="ns/job"} 9000.0' in text
    assert 'workqueue_work_duration_seconds_count{name="handler:reconcile"} 1.0' in text
    metrics.forget_queue("ns/job")
    assert 'name="ns/job"' not in generate_latest(metrics.registry).decode()


def test_kubectl_status_shows_p50_and_p95_per_item() -> None:
    qj = {
        "metadata": {"name": "render", "namespace": "team-a"},
        "status": {
            "phase": "Running",
            "counts": {"total": 10, "succeeded": 4},
            "itemDuration": {"count": 4, "p50Seconds": 0.85, "p95Seconds": 192.0},
        },
    }
    data = render.summary(qj, [])
    assert data["itemDuration"]["p95Seconds"] == 192.0
    text = render.status_text(data)
    assert "per item: p50 850ms   p95 3m12s   (4 items)" in text
    empty = render.status_text(render.summary({**qj, "status": {"phase": "Running"}}, []))
    assert "per item: p50 -   p95 -   (no item completed yet)" in empty
    assert render.seconds(4.24) == "4.2s"
    assert render.seconds(3900) == "1h5m"


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_sends_its_histogram_at_most_once_per_interval() -> None:
    ticker = Ticker()
    acc = durations.DurationAccumulator(1.0, ticker)
    assert acc.take(completing=False) is None  # nothing to send, nothing to record
    assert acc.take(completing=True) == ["0"]  # the first completing call records itself
    sent = []
    for step in range(32):  # 4 s of calls every 1/8 s, each completing one item of 0.25 s
        ticker.now = 0.0625 + step / 8
        block = acc.take(completing=True)
        if block is None:
            acc.add(1_250_000, ["n@1000.1:w"])
        else:
            sent.append((ticker.now, block))
    assert [at for at, _ in sent] == [1.0625, 2.0625, 3.0625]  # never twice within 1 s
    assert sent[0][1] == ["2", "0.25", "8", "sum_us", "2000000"]
    assert sent[1][1] == ["2", "0.25", "7", "sum_us", "1750000"]
    assert acc.flushes == 3
    assert acc.pending == 7  # the calls after 3.0625 s
    assert acc.take(force=True) == ["2", "0.25", "7", "sum_us", "1750000"]
    assert acc.take(force=True) is None and acc.pending == 0


def test_the_python_buckets_are_the_lua_ones_at_each_bound() -> None:
    acc = durations.DurationAccumulator(0.0)
    for bound_us in durations.BOUNDS_US:
        acc.add(10_000_000_000 + bound_us, ["n@10000000.1:w"])  # exactly at the bound
        acc.add(10_000_000_000 + bound_us + 1, ["n@10000000.2:w"])  # just above it
    acc.add(10_000_000_000, ["no-lease-time:w", "n@10000000.3:w"])  # 0 s; a token skipped
    block = acc.take(force=True)
    assert block is not None
    fields = dict(zip(block[1::2], block[2::2], strict=True))
    expected = {f: "2" for f in durations.BOUND_FIELDS[1:]}
    expected.update({"0.005": "2", "+Inf": "1"})
    assert {f: v for f, v in fields.items() if f != "sum_us"} == expected


def observed(client: redis.Redis | RedisCluster, name: str) -> DurationHistogram:
    """The hash as another process sees it (an observer holds no unsent durations)."""
    return LeaseQueue(client, name).durations()


def test_worker_durations_reach_redis_when_due_and_all_once_idle(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    clock = Clock()
    queue = LeaseQueue(redis_client, "dur-idle", clock=clock, durations_interval=3600)
    queue.configure(QueueConfig(lease_seconds=3600))
    queue.seed([f"i{n:02d}" for n in range(20)])
    held = queue.lease("w")
    totals = []
    while held:
        clock.now += 0.3  # every item takes 0.3 s on the queue's clock -> bucket 0.5
        done = held
        held = queue.complete_and_lease(done, "w").leases
        if held:
            assert queue.complete_many(done) == {}  # repeated: accepted, not counted again
        totals.append(observed(redis_client, "dur-idle").total)
    # The first completing call records itself; the others wait for the interval (an hour),
    # until the lease that found nothing sends them all.
    assert totals[:-1] == [1] * 19
    assert totals[-1] == 20 == queue.stats().succeeded
    hist = observed(redis_client, "dur-idle")
    assert hist.counts[durations.BOUND_FIELDS.index("0.5")] == 20
    assert hist.sum_seconds == pytest.approx(6.0, abs=1e-3)


def test_close_sends_what_single_completions_counted(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    clock = Clock()
    queue = LeaseQueue(redis_client, "dur-close", clock=clock, durations_interval=3600)
    queue.configure(QueueConfig(lease_seconds=3600))
    queue.seed([f"i{n}" for n in range(6)])
    batch = queue.lease("w", n=6)
    clock.now += 2
    queue.complete(batch[0])  # records itself (first completing call)
    clock.now += 20
    for lease in batch[1:]:
        queue.complete(lease)
    assert queue.complete_many([batch[1], batch[1]]) == {}  # repeats: nothing counted
    assert observed(redis_client, "dur-close").total == 1
    queue.close()
    hist = observed(redis_client, "dur-close")
    by_bound = dict(zip((*durations.BOUND_FIELDS, "+Inf"), hist.counts, strict=True))
    assert {k: v for k, v in by_bound.items() if v} == {"2.5": 1, "30": 5}
    assert hist.total == queue.stats().succeeded == 6
    assert hist.sum_seconds == pytest.approx(2 + 5 * 22, abs=1e-3)


def test_every_call_records_with_a_zero_interval(redis_client: redis.Redis | RedisCluster) -> None:
    clock = Clock()
    queue = LeaseQueue(redis_client, "dur-zero", clock=clock, durations_interval=0)
    queue.configure(QueueConfig(lease_seconds=3600))
    queue.seed([f"i{n}" for n in range(5)])
    held = queue.lease("w")
    for n in range(1, 5):
        clock.now += 0.02
        held = queue.complete_and_lease(held, "w").leases
        assert observed(redis_client, "dur-zero").total == n


def test_a_crash_loses_only_unsent_durations_never_items(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    clock = Clock()
    name = "dur-crash"
    crashing = LeaseQueue(redis_client, name, clock=clock, durations_interval=3600)
    crashing.configure(QueueConfig(lease_seconds=60))
    crashing.seed([f"i{n:02d}" for n in range(30)])
    held = crashing.lease("crashing")
    for _ in range(10):
        clock.now += 1
        held = crashing.complete_and_lease(held, "crashing").leases
    unsent = crashing._durations.pending
    assert unsent == 9  # the first completing call recorded itself
    del crashing  # dies holding one lease and nine unsent durations: no close()
    clock.now += 61  # its lease expires
    survivor = LeaseQueue(redis_client, name, clock=clock)
    held = survivor.lease("survivor")
    while held:
        held = survivor.complete_and_lease(held, "survivor").leases
    survivor.close()
    stats = survivor.stats()
    assert (stats.succeeded, stats.pending, stats.leased, stats.dead) == (30, 0, 0, 0)
    assert observed(redis_client, name).total == 30 - unsent
