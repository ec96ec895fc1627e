"""The streamed ``/metrics`` endpoint (``queuejob.exposition``):

- its text parses to the same families, samples and values as prometheus_client's
  ``generate_latest`` of the whole registry, for any QueueJob names (quotes, backslashes and
  newlines in label values included) and figures;
- every family appears once, with its samples together;
- it is sent in chunks of about ``CHUNK`` bytes, gzip-compressed when the scraper accepts it,
  over a real HTTP server on loopback; other methods than GET and OPTIONS are refused.
"""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from queuejob import exposition
from queuejob.metrics import Metrics
from workqueue.durations import BOUNDS, DurationHistogram

Families = dict[str, tuple[str, str, list[tuple[str, tuple[tuple[str, str], ...], float]]]]


def parse(text: str) -> Families:
    """name -> (type, help, samples sorted); fails if a family appears twice."""
    out: Families = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in out, f"family {family.name} appears twice"
        samples = sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in family.samples)
        out[family.name] = (family.type, family.documentation, samples)
    return out


def streamed_text(metrics: Metrics) -> str:
    plain = exposition.Collectors(metrics.registry.plain)
    return "".join(exposition.exposition(plain, metrics.registry.streamed))


def populated(names: list[str], figures: list[int]) -> Metrics:
    metrics = Metrics(concurrency_limit=4)
    metrics.declare_handler("handler:reconcile")
    metrics.adds.labels("handler:reconcile").inc(2)
    metrics.work_duration.labels("handler:reconcile").observe(0.3)
    for i, name in enumerate(names):
        f = figures[i % len(figures)]
        counts = tuple((f + b) % 5 for b in range(len(BOUNDS) + 1))
        metrics.observe_queue(
            name,
            pending=f,
            delayed=f % 3,
            leased=f % 4,
            succeeded=2 * f,
            dead=f % 2,
            total=3 * f + 1,
            retries=f % 7,
            durations=DurationHistogram(counts, f / 8),
        )
        if i % 2:
            metrics.observe_workers(name, desired=f % 9, current=f % 5)
    return metrics


label_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
)


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(label_text, min_size=0, max_size=6, unique=True),
    figures=st.lists(st.integers(0, 10**9), min_size=1, max_size=6),
)
def test_streamed_text_parses_like_generate_latest(names: list[str], figures: list[int]) -> None:
    metrics = populated(names, figures)
    whole = parse(generate_latest(metrics.registry).decode())
    streamed = parse(streamed_text(metrics))
    assert streamed == whole
    for name in names:  # the QueueJobs' own series are there, not only the handlers'
        assert any(
            ("name", name) in labels
            for _, labels, _ in streamed["workqueue_work_duration_seconds"][2]
        )


def test_queue_rows_follow_the_handler_samples_in_one_family() -> None:
    metrics = populated(["ns/a", "ns/b"], [3])
    text = streamed_text(metrics)
    # the counter's _created samples come after all its _total samples, as their own family
    adds = text.index("# TYPE workqueue_adds_total counter")
    created = text.index("# TYPE workqueue_adds_created gauge")
    last_total = text.rindex("workqueue_adds_total{")
    assert adds < last_total < created
    assert 'workqueue_adds_total{name="ns/b"} 10.0' in text


def test_chunks_are_about_the_chunk_size_and_lose_nothing() -> None:
    lines = [f"line {i} {'x' * (i % 50)}\n" for i in range(5000)]
    parts = list(exposition.chunks(lines, size=4096))
    assert b"".join(parts).decode() == "".join(lines)
    longest = max(len(line) for line in lines)
    assert len(parts) > 10
    assert all(len(p) < 4096 + longest for p in parts)
    assert all(len(p) >= 4096 for p in parts[:-1])


def test_gzipped_is_one_gzip_stream() -> None:
    parts = [f"part {i}\n".encode() * 100 for i in range(50)]
    assert gzip.decompress(b"".join(exposition.gzipped(iter(parts)))) == b"".join(parts)


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Metrics]]:
    metrics = populated([f"tenant-{i % 7}/queuejob-{i}" for i in range(3000)], [1, 5, 40])
    server = exposition.serve(metrics.app(), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics", metrics
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str, **headers: str) -> tuple[dict[str, Any], bytes, int]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as reply:
        reads = 0
        body = b""
        while part := reply.read(exposition.CHUNK):
            body += part
            reads += 1
        return dict(reply.headers), body, reads


def test_the_endpoint_serves_the_stream(endpoint: tuple[str, Metrics]) -> None:
    url, metrics = endpoint
    headers, body, reads = fetch(url)
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in headers
    assert len(body) > 4 * exposition.CHUNK and reads > 4
    assert parse(body.decode()) == parse(generate_latest(metrics.registry).decode())


def test_the_endpoint_gzips_when_asked(endpoint: tuple[str, Metrics]) -> None:
    url, metrics = endpoint
    headers, body, _ = fetch(url, **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body)
    assert len(body) < len(text) / 4
    assert parse(text.decode()) == parse(generate_latest(metrics.registry).decode())


def test_the_endpoint_refuses_other_methods(endpoint: tuple[str, Metrics]) -> None:
    url, _ = endpoint
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=10)
    assert refused.value.code == 405
    assert refused.value.headers["Allow"] == "OPTIONS,GET"
