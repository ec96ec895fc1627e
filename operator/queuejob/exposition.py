"""The ``/metrics`` endpoint, written as a stream of chunks instead of one text built in memory.

prometheus_client renders a scrape by building every sample of every family as Python objects,
then every line, then one joined text. The operator exports about 32 series per QueueJob (its
queue's depth, counts, workers and the per-item duration histogram), so at 10,000 QueueJobs
one scrape built about 320,000 samples at once; the memory that freed afterwards stayed with
the process (see docs/benchmarks.md).

Here the families with a series per QueueJob (:class:`Streamed` collectors) write their own
lines, one QueueJob after the other, and the endpoint sends them in chunks of about
:data:`CHUNK` bytes; the other families are rendered by prometheus_client's ``generate_latest``.

Guarantees:

- the text is the Prometheus text format 0.0.4 and parses to the same families and samples as
  ``generate_latest`` of the whole registry at the same moment (the tests compare them);
- each family appears once, with all its samples together (a counter's or histogram's
  ``_created`` samples after them, as ``generate_latest`` writes them);
- a scrape holds about one chunk of text (plus a list of the QueueJobs' rows, not copies of
  them), whatever the number of QueueJobs;
- gzip is applied as a stream when the scraper accepts it (Prometheus does).
"""

from __future__ import annotations

import socket
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

#: Bytes of text gathered before a chunk is sent.
CHUNK = 64 * 1024

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@runtime_checkable
class Streamed(Protocol):
    """A collector that can also write its family as text lines, lazily."""

    def stream(self) -> Iterator[str]: ...


def escape_label(value: str) -> str:
    """A label value as the text format quotes it (backslash, newline, double quote)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def number(value: float) -> str:
    """A sample's value as the text format writes it (``generate_latest``'s own formatting)."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def sample_line(name: str, labels: Mapping[str, str], value: float) -> str:
    """One sample's line, labels sorted by name (as ``generate_latest`` writes them)."""
    if not labels:
        return f"{name} {number(value)}\n"
    inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {number(value)}\n"


def family_lines(family: Metric, rows: Iterable[str]) -> Iterator[str]:
    """``family`` as ``generate_latest`` writes it, with ``rows`` (sample lines already
    written) right after the family's own samples. Counters, gauges and histograms only."""
    if family.type not in ("counter", "gauge", "histogram"):
        raise ValueError(f"cannot stream a {family.type} family ({family.name})")
    name = family.name + "_total" if family.type == "counter" else family.name
    text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    yield f"# HELP {name} {text}\n# TYPE {name} {family.type}\n"
    created: list[str] = []
    for sample in family.samples:
        line = _line(sample)
        if sample.name == family.name + "_created":
            created.append(line)
        else:
            yield line
    yield from rows
    if created:
        yield f"# HELP {family.name}_created {text}\n# TYPE {family.name}_created gauge\n"
        yield from created


def _line(sample: Sample) -> str:
    if sample.timestamp is not None:
        raise ValueError(f"cannot stream a sample with a timestamp ({sample.name})")
    return sample_line(sample.name, sample.labels, sample.value)


class Collectors(Collector):
    """Several collectors as one (what ``generate_latest`` takes)."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def exposition(plain: Collector, streamed: Sequence[Streamed]) -> Iterator[str]:
    """The whole text of a scrape, lazily: ``plain`` rendered at once, then each streamed
    family line by line."""
    yield generate_latest(plain).decode()
    for collector in streamed:
        yield from collector.stream()


def chunks(lines: Iterable[str], size: int = CHUNK) -> Iterator[bytes]:
    """``lines`` joined into UTF-8 chunks of about ``size`` bytes (at least one line each)."""
    gathered: list[str] = []
    length = 0
    for line in lines:
        gathered.append(line)
        length += len(line)
        if length >= size:
            yield "".join(gathered).encode()
            gathered, length = [], 0
    if gathered:
        yield "".join(gathered).encode()


def gzipped(parts: Iterable[bytes]) -> Iterator[bytes]:
    """``parts`` as one gzip stream, compressed as they come."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for part in parts:
        out = compressor.compress(part)
        if out:
            yield out
    yield compressor.flush()


def make_app(
    plain: Collector, streamed: Sequence[Streamed]
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app serving the exposition on every path but ``/favicon.ico`` (like
    prometheus_client's), GET and OPTIONS only."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return [b""]
        if method != "GET":
            start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET")])
            return [f"# HTTP 405 Method Not Allowed: {method}; use OPTIONS or GET\n".encode()]
        if environ.get("PATH_INFO") == "/favicon.ico":
            start_response("200 OK", [])
            return [b""]
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
        body = chunks(exposition(plain, streamed))
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            headers.append(("Content-Encoding", "gzip"))
            body = gzipped(body)
        start_response("200 OK", headers)
        return body

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing (a scrape every few seconds)."""


def serve(
    app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], address: str, port: int
) -> WSGIServer:
    """Serve ``app`` on ``address:port`` from a daemon thread (one thread per request)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(str(sockaddr[0]), port, app, Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


__all__ = [
    "CHUNK",
    "Collectors",
    "StartResponse",
    "Streamed",
    "chunks",
    "escape_label",
    "exposition",
    "family_lines",
    "gzipped",
    "make_app",
    "number",
    "sample_line",
    "serve",
]
