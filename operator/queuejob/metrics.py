"""Prometheus metrics with client-go's workqueue names.

Two kinds of "queues" are reported, both labelled ``name``:

- ``handler:<id>``: the operator's own controller-side queue of handler invocations. Depth is the
  number of invocations waiting for a slot of the operator-wide concurrency limiter; queue
  duration is that wait; work duration is the handler's run time; retries count temporary errors.
- ``<namespace>/<queuejob>``: a QueueJob's Redis work queue, set by each status refresh.
  Depth is pending + delayed items; adds are items seeded; retries are item retries;
  unfinished work is the number of leased items; work duration is each item's processing time
  (lease to completion), as recorded by the workers in the queue (``workqueue.durations``; its
  buckets, not the handlers').

The ``queuejob_handler_concurrency`` and ``queuejob_object_handler_concurrency`` histograms
record, at every handler start, how many handlers were in flight operator-wide and for the same
object; their buckets make the observed maximum readable from outside (e.g. by tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queuejob import exposition
from workqueue.durations import BOUNDS, DurationHistogram

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _integer_buckets(limit: int) -> tuple[float, ...]:
    """Buckets 1, 2, ..., limit, limit + 1 (the last one shows any excess over the limit)."""
    return tuple(float(i) for i in range(1, min(limit, 128) + 2))


class _Running(Collector):
    """Unfinished-work and longest-running gauges computed from the handlers running now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, tuple[str, float]] = {}
        self._next = 0
        self._names: set[str] = set()

    def declare(self, name: str) -> None:
        """Report ``name`` (as 0) even while nothing of it runs."""
        with self._lock:
            self._names.add(name)

    def start(self, name: str) -> int:
        with self._lock:
            self._next += 1
            self._running[self._next] = (name, time.monotonic())
            return self._next

    def stop(self, token: int) -> None:
        with self._lock:
            self._running.pop(token, None)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now = time.monotonic()
        unfinished = GaugeMetricFamily(
            "workqueue_unfinished_work_seconds",
            "Seconds of work in progress not yet observed by work_duration (sum over workers).",
            labels=["name"],
        )
        longest = GaugeMetricFamily(
            "workqueue_longest_running_processor_seconds",
            "Seconds the longest running processor has been running.",
            labels=["name"],
        )
        with self._lock:
            totals: dict[str, float] = dict.fromkeys(self._names, 0.0)
            maxima: dict[str, float] = dict.fromkeys(self._names, 0.0)
            for name, started in self._running.values():
                age = now - started
                totals[name] = totals.get(name, 0.0) + age
                maxima[name] = max(maxima.get(name, 0.0), age)
        for name in sorted(totals):
            unfinished.add_metric([name], totals[name])
            longest.add_metric([name], maxima[name])
        yield unfinished
        yield longest


class _WorkDurations(Collector):
    """``workqueue_work_duration_seconds``: handler run times observed here (a Histogram) and
    QueueJob item times copied from the queue's own histogram, in one metric family."""

    NAME = "workqueue_work_duration_seconds"

    def __init__(self) -> None:
        self.handlers = Histogram(
            self.NAME,
            "How long in seconds processing an item from the workqueue takes.",
            ["name"],
            buckets=_DURATION_BUCKETS,
            registry=None,
        )
        self._lock = threading.Lock()
        self._queues: dict[str, DurationHistogram] = {}

    def labels(self, name: str) -> Histogram:
        return self.handlers.labels(name)

    def set_queue(self, name: str, histogram: DurationHistogram) -> None:
        with self._lock:
            self._queues[name] = histogram

    def forget_queue(self, name: str) -> None:
        with self._lock:
            self._queues.pop(name, None)

    def describe(self) -> Iterable[Metric]:
        return self.handlers.describe()

    def _snapshot(self) -> list[tuple[str, DurationHistogram]]:
        with self._lock:
            return sorted(self._queues.items())

    def collect(self) -> Iterable[Metric]:
        families = list(self.handlers.collect())
        family = families[0]
        for name, histogram in self._snapshot():
            for le, (_, count) in zip(_LE, histogram.cumulative(), strict=True):
                family.add_sample(f"{self.NAME}_bucket", {"name": name, "le": le}, count)
            family.add_sample(f"{self.NAME}_count", {"name": name}, histogram.total)
            family.add_sample(f"{self.NAME}_sum", {"name": name}, histogram.sum_seconds)
        return families

    def stream(self) -> Iterator[str]:
        """The family's text: the handlers' histograms, then each QueueJob's, line by line."""
        family = next(iter(self.handlers.collect()))
        return exposition.family_lines(family, self._queue_lines())

    def _queue_lines(self) -> Iterator[str]:
        # The samples of collect(), written straight as text: no label dict per sample (0.34
        # against 0.51 s per scrape at 10,000 queues). The exposition tests check that both agree.
        bucket, count, total = f"{self.NAME}_bucket", f"{self.NAME}_count", f"{self.NAME}_sum"
        for name, histogram in self._snapshot():
            label = f'name="{exposition.escape_label(name)}"'
            for le, (_, n) in zip(_LE, histogram.cumulative(), strict=True):
                yield f'{bucket}{{le="{le}",{label}}} {exposition.number(n)}\n'
            yield f"{count}{{{label}}} {exposition.number(histogram.total)}\n"
            yield f"{total}{{{label}}} {exposition.number(histogram.sum_seconds)}\n"


#: The ``le`` label of each bucket of a queue's duration histogram, ``+Inf`` last.
_LE = (*(repr(bound) for bound in BOUNDS), "+Inf")


#: Event-driven refresh metrics: (name, kind, help), read from ``Refresher.stats()`` at scrape.
REFRESHER_METRICS = (
    (
        "queuejob_refresh_queue_depth",
        "gauge",
        "QueueJobs with a refresh queued for an event or a time it named (not the resync).",
    ),
    ("queuejob_refresh_resyncs_queued", "gauge", "QueueJobs queued for their next resync only."),
    (
        "queuejob_refresh_resyncs_held",
        "counter",
        "Resyncs that came due and waited for a turn under the resync rate cap.",
    ),
    ("queuejob_refresh_processing", "gauge", "Event-driven refreshes running now."),
    (
        "queuejob_refresh_triggers",
        "counter",
        "Triggers of event-driven refreshes (all sources; resyncs not counted).",
    ),
    (
        "queuejob_refresh_coalesced",
        "counter",
        "Triggers that joined a refresh already queued (no extra refresh).",
    ),
    ("queuejob_refreshes", "counter", "Event-driven refreshes run."),
    (
        "queuejob_queue_notifications",
        "counter",
        "Queue-change notifications received from Redis.",
    ),
    (
        "queuejob_queue_notification_channels",
        "gauge",
        "Queue channels subscribed now (on connected links).",
    ),
)


#: A queue's figures, in the order of :data:`_QUEUE_FIELDS`.
_QueueFigures = tuple[int, ...]
_QUEUE_FIELDS = (
    "pending", "delayed", "leased", "succeeded", "dead", "adds", "retries", "desired", "current"
)  # fmt: skip
_ITEM_STATES = ("pending", "delayed", "leased", "succeeded", "dead")


class _QueueSeries(Collector):
    """The per-QueueJob series of a labelled metric: the figures of every queue are plain
    numbers in one table (:class:`_QueueTable`), turned into samples at each scrape, instead of
    one prometheus_client child per series (about 0.6 KiB each, eleven per QueueJob). The
    handler-side children of the same metric (``handler:<id>``) stay ordinary ones, and both
    come out as one metric family."""

    def __init__(
        self,
        metric: Gauge | Counter,
        table: _QueueTable,
        samples: Callable[[str, _QueueFigures], Iterable[tuple[dict[str, str], float]]],
    ) -> None:
        self.metric = metric
        self._table = table
        self._samples = samples
        self._suffix = "_total" if isinstance(metric, Counter) else ""

    def labels(self, *values: str) -> Any:
        return self.metric.labels(*values)

    def describe(self) -> Iterable[Metric]:
        return self.metric.describe()

    def collect(self) -> Iterable[Metric]:
        families = list(self.metric.collect())
        family = families[0]
        for name, figures in self._table.snapshot():
            for labels, value in self._samples(name, figures):
                family.add_sample(family.name + self._suffix, labels, value)
        return families

    def stream(self) -> Iterator[str]:
        """The family's text: the handler-side samples, then each QueueJob's, line by line."""
        family = next(iter(self.metric.collect()))
        return exposition.family_lines(family, self._queue_lines(family.name + self._suffix))

    def _queue_lines(self, sample: str) -> Iterator[str]:
        for name, figures in self._table.snapshot():
            for labels, value in self._samples(name, figures):
                yield exposition.sample_line(sample, labels, value)


class _QueueTable:
    """The latest figures of every QueueJob's queue, -1 where not observed yet (rows are
    written by refreshes on the event loop, read by scrapes from the HTTP thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, _QueueFigures] = {}

    def get(self, name: str) -> _QueueFigures | None:
        with self._lock:
            return self._rows.get(name)

    def put(self, name: str, figures: _QueueFigures) -> None:
        with self._lock:
            self._rows[name] = figures

    def drop(self, name: str) -> None:
        with self._lock:
            self._rows.pop(name, None)

    def snapshot(self) -> list[tuple[str, _QueueFigures]]:
        with self._lock:
            return sorted(self._rows.items())


def _field(field: str) -> Callable[[str, _QueueFigures], Iterable[tuple[dict[str, str], float]]]:
    """Samples of one figure of each queue labelled ``name`` (none while it is unknown, -1)."""
    index = _QUEUE_FIELDS.index(field)

    def samples(name: str, figures: _QueueFigures) -> Iterable[tuple[dict[str, str], float]]:
        if figures[index] >= 0:
            yield {"name": name}, figures[index]

    return samples


def _depth(name: str, figures: _QueueFigures) -> Iterable[tuple[dict[str, str], float]]:
    if figures[0] >= 0:
        yield {"name": name}, figures[0] + figures[1]


def _items(name: str, figures: _QueueFigures) -> Iterable[tuple[dict[str, str], float]]:
    if figures[0] >= 0:
        for i, state in enumerate(_ITEM_STATES):
            yield {"name": name, "state": state}, figures[i]


class _Sampled(Collector):
    """The :data:`REFRESHER_METRICS`, sampled from a callable at every scrape."""

    def __init__(self, source: Callable[[], Mapping[str, float]]) -> None:
        self._source = source

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        values = self._source()
        for name, kind, text in REFRESHER_METRICS:
            value = float(values.get(name, 0.0))
            if kind == "counter":
                yield CounterMetricFamily(name, text, value=value)
            else:
                yield GaugeMetricFamily(name, text, value=value)


class _Flows(Collector):
    """Waiting and running handler slots per flow (namespace), sampled at every scrape."""

    def __init__(self, source: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        self._source = source

    def collect(self) -> Iterable[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "queuejob_flow_waiting",
            "Handlers waiting for an operator-wide slot, per flow (namespace).",
            labels=["flow"],
        )
        running = GaugeMetricFamily(
            "queuejob_flow_running",
            "Handlers holding an operator-wide slot, per flow (namespace).",
            labels=["flow"],
        )
        for flow, (w, r) in sorted(self._source().items()):
            waiting.add_metric([flow], w)
            running.add_metric([flow], r)
        yield waiting
        yield running


class _Registry(CollectorRegistry):
    """A registry that also lists its collectors in two groups, in the order registered: those
    with a series per QueueJob (``streamed``: the endpoint writes them line by line, see
    :mod:`queuejob.exposition`) and the others (``plain``). Nothing is ever unregistered."""

    def __init__(self) -> None:
        super().__init__()
        self.plain: list[Collector] = []
        self.streamed: list[exposition.Streamed] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        if isinstance(collector, exposition.Streamed):
            self.streamed.append(collector)
        else:
            self.plain.append(collector)


class Metrics:
    """All operator metrics, in their own registry (no default process collectors twice)."""

    def __init__(self, concurrency_limit: int) -> None:
        self.registry = _Registry()
        r = self.registry
        self.queues = _QueueTable()
        self.depth = self._per_queue(
            Gauge("workqueue_depth", "Current depth of the workqueue.", ["name"], registry=None),
            _depth,
        )
        self.adds = self._per_queue(
            Counter(
                "workqueue_adds",
                "Total number of adds handled by the workqueue.",
                ["name"],
                registry=None,
            ),
            _field("adds"),
        )
        self.retries = self._per_queue(
            Counter(
                "workqueue_retries",
                "Total number of retries handled by the workqueue.",
                ["name"],
                registry=None,
            ),
            _field("retries"),
        )
        self.queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in the workqueue before being requested.",
            ["name"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.work_duration = _WorkDurations()
        r.register(self.work_duration)
        self.running = _Running()
        r.register(self.running)
        self.queue_unfinished = self._per_queue(
            Gauge(
                "queuejob_items_leased",
                "Items of a QueueJob's queue currently leased by workers.",
                ["name"],
                registry=None,
            ),
            _field("leased"),
        )
        self.items = self._per_queue(
            Gauge(
                "queuejob_items",
                "Items of a QueueJob's queue by state.",
                ["name", "state"],
                registry=None,
            ),
            _items,
        )
        self.concurrency_limit = Gauge(
            "queuejob_handler_concurrency_limit",
            "Operator-wide limit on handlers in flight.",
            registry=r,
        )
        self.concurrency_limit.set(concurrency_limit)
        self.in_flight = Gauge(
            "queuejob_handlers_in_flight", "Handlers running now (operator-wide).", registry=r
        )
        self.max_in_flight = Gauge(
            "queuejob_handlers_max_in_flight",
            "High-water mark of handlers running at once (operator-wide).",
            registry=r,
        )
        self.concurrency = Histogram(
            "queuejob_handler_concurrency",
            "Handlers in flight operator-wide, observed at each handler start.",
            buckets=_integer_buckets(concurrency_limit),
            registry=r,
        )
        self.object_concurrency = Histogram(
            "queuejob_object_handler_concurrency",
            "Handlers in flight for the same QueueJob, observed at each handler start.",
            buckets=(1.0, 2.0, 3.0, 5.0),
            registry=r,
        )
        self.retry_delay = Histogram(
            "queuejob_handler_retry_delay_seconds",
            "Delays chosen for handler retries after temporary errors.",
            ["name"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.phase_changes = Counter(
            "queuejob_phase_changes", "QueueJob phase transitions.", ["phase"], registry=r
        )
        self.node_lost_pods = Counter(
            "queuejob_node_lost_pods",
            "Worker pods on a lost node that the operator marked Failed and deleted.",
            registry=r,
        )
        self.leader = Gauge(
            "queuejob_leader",
            "1 while this process reconciles (it holds the leader-election Lease, or leader "
            "election is off); 0 while it is a standby.",
            registry=r,
        )
        self.workers_desired = self._per_queue(
            Gauge(
                "queuejob_workers_desired",
                "Worker pods a QueueJob asks its Job for: spec.parallelism, or the autoscaler's "
                "choice from queue depth when spec.autoscaling is set.",
                ["name"],
                registry=None,
            ),
            _field("desired"),
        )
        self.workers_current = self._per_queue(
            Gauge(
                "queuejob_workers_current",
                "Worker pods of a QueueJob's Job active now (the Job's status.active).",
                ["name"],
                registry=None,
            ),
            _field("current"),
        )

    def _per_queue(
        self,
        metric: Gauge | Counter,
        samples: Callable[[str, _QueueFigures], Iterable[tuple[dict[str, str], float]]],
    ) -> _QueueSeries:
        series = _QueueSeries(metric, self.queues, samples)
        self.registry.register(series)
        return series

    def declare_handler(self, name: str) -> None:
        """Create every handler metric's label set for ``name`` so it is exported as 0."""
        self.depth.labels(name)
        self.adds.labels(name)
        self.retries.labels(name)
        self.queue_duration.labels(name)
        self.work_duration.labels(name)
        self.retry_delay.labels(name)
        self.running.declare(name)

    def sample(self, source: Callable[[], Mapping[str, float]]) -> None:
        """Export the :data:`REFRESHER_METRICS` read from ``source`` at every scrape."""
        self.registry.register(_Sampled(source))

    def sample_flows(self, source: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        """Export ``queuejob_flow_waiting``/``queuejob_flow_running`` read from ``source``."""
        self.registry.register(_Flows(source))

    def app(self) -> Callable[[dict[str, Any], exposition.StartResponse], Iterable[bytes]]:
        """The ``/metrics`` WSGI app: the whole registry, the per-QueueJob series streamed."""
        plain = exposition.Collectors(self.registry.plain)
        return exposition.make_app(plain, self.registry.streamed)

    def serve(self, address: str, port: int) -> WSGIServer | None:
        """Start the ``/metrics`` HTTP endpoint in a daemon thread (port 0: do nothing)."""
        return exposition.serve(self.app(), address, port) if port else None

    def observe_queue(
        self,
        name: str,
        *,
        pending: int,
        delayed: int,
        leased: int,
        succeeded: int,
        dead: int,
        total: int,
        retries: int,
        durations: DurationHistogram | None = None,
    ) -> None:
        """Publish a QueueJob queue's stats; the counters keep the highest ``total`` and
        ``retries`` seen; ``durations``: the queue's per-item processing times (exported as
        they are)."""
        if durations is not None:
            self.work_duration.set_queue(name, durations)
        row = self.queues.get(name) or (-1,) * len(_QUEUE_FIELDS)
        adds, retried = max(total, row[5]), max(retries, row[6])
        self.queues.put(name, (pending, delayed, leased, succeeded, dead, adds, retried, *row[7:]))

    def observe_workers(self, name: str, *, desired: int, current: int) -> None:
        """Publish a QueueJob's desired and current (active) worker counts."""
        row = self.queues.get(name) or (-1,) * len(_QUEUE_FIELDS)
        self.queues.put(name, (*row[:7], desired, current))

    def forget_queue(self, name: str) -> None:
        """Drop the series of a deleted QueueJob's queue."""
        self.work_duration.forget_queue(name)
        self.queues.drop(name)
