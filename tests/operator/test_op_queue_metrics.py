"""The per-QueueJob series (``workqueue_depth``, ``workqueue_adds_total``,
``workqueue_retries_total``, ``queuejob_items``, ``queuejob_items_leased``,
``queuejob_workers_desired``/``current``) come out of one table of plain numbers, in the same
metric families as the handler queues' series:

- every family appears once in the exposition, with the handlers' and the QueueJobs' samples;
- the values are the latest observed ones; the counters keep the highest total seen (a lower
  one, from a replica that lags, never takes them back);
- a series appears only once its figures were observed, and a forgotten QueueJob has none.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from queuejob.metrics import Metrics

QUEUE = "ns/job"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(metrics: Metrics) -> Samples:
    text = generate_latest(metrics.registry).decode()
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), f"a family appears twice: {sorted(names)}"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def _queue(samples: Samples, name: str = QUEUE) -> dict[tuple[str, Any], float]:
    return {
        (metric, tuple((k, v) for k, v in labels if k != "name")): value
        for (metric, labels), value in samples.items()
        if ("name", name) in labels
    }


def test_queue_series_beside_the_handlers_in_one_family_each() -> None:
    metrics = Metrics(4)
    metrics.declare_handler("handler:reconcile")
    metrics.depth.labels("handler:reconcile").inc()
    metrics.adds.labels("handler:reconcile").inc(3)
    metrics.observe_queue(
        QUEUE, pending=5, delayed=2, leased=3, succeeded=10, dead=1, total=21, retries=4
    )
    metrics.observe_workers(QUEUE, desired=4, current=3)
    samples = _samples(metrics)
    assert samples[("workqueue_depth", (("name", "handler:reconcile"),))] == 1
    assert samples[("workqueue_adds_total", (("name", "handler:reconcile"),))] == 3
    assert _queue(samples) == {
        ("workqueue_depth", ()): 7,
        ("workqueue_adds_total", ()): 21,
        ("workqueue_retries_total", ()): 4,
        ("queuejob_items_leased", ()): 3,
        ("queuejob_items", (("state", "pending"),)): 5,
        ("queuejob_items", (("state", "delayed"),)): 2,
        ("queuejob_items", (("state", "leased"),)): 3,
        ("queuejob_items", (("state", "succeeded"),)): 10,
        ("queuejob_items", (("state", "dead"),)): 1,
        ("queuejob_workers_desired", ()): 4,
        ("queuejob_workers_current", ()): 3,
    }


def test_series_appear_when_observed_and_go_when_forgotten() -> None:
    metrics = Metrics(4)
    metrics.observe_workers(QUEUE, desired=2, current=0)  # the queue not read yet
    assert _queue(_samples(metrics)) == {
        ("queuejob_workers_desired", ()): 2,
        ("queuejob_workers_current", ()): 0,
    }
    metrics.observe_queue(
        QUEUE, pending=1, delayed=0, leased=0, succeeded=0, dead=0, total=1, retries=0
    )
    assert _queue(_samples(metrics))[("queuejob_workers_desired", ())] == 2  # kept
    metrics.observe_queue(
        "ns/other", pending=0, delayed=0, leased=0, succeeded=0, dead=0, total=0, retries=0
    )
    metrics.forget_queue(QUEUE)
    samples = _samples(metrics)
    assert _queue(samples) == {}
    assert _queue(samples, "ns/other")[("workqueue_depth", ())] == 0


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**4)), min_size=1))
def test_counters_keep_the_highest_total_seen(observed: list[tuple[int, int]]) -> None:
    metrics = Metrics(4)
    for total, retries in observed:
        metrics.observe_queue(
            QUEUE, pending=0, delayed=0, leased=0, succeeded=0, dead=0, total=total, retries=retries
        )
    queue = _queue(_samples(metrics))
    assert queue[("workqueue_adds_total", ())] == max(t for t, _ in observed)
    assert queue[("workqueue_retries_total", ())] == max(r for _, r in observed)
