"""Per-item durations (lease to completion) recorded by the complete scripts, on one server and on
a Redis Cluster; their export as ``workqueue_work_duration_seconds`` and in ``kubectl queuejob
status``.

- each completion adds its item once to the bucket of its duration (queue clock), whichever
  call completes it (complete, complete_many, complete_and_lease), and a re-sent completion
  (same token) is not counted again;
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
