"""An autoscaling trace: a QueueJob's workers over time against its queue depth.

A :class:`Tracer` samples, once per ``interval`` seconds in a daemon thread, the queue's counts
straight from Redis (one atomic ``stats()``), the QueueJob's ``status.workers.desired``, the
Job's ``spec.parallelism`` and the worker pods Running (not terminating). Used by the autoscaling
e2e test and by ``benchmarks/trace_autoscaling.py``; :func:`table` prints the samples. A sample
that fails (the API or Redis briefly unreachable) is skipped, never raised into the caller.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from types import TracebackType
from typing import Any

from kubernetes import client

from queuejob import naming
from workqueue.redisqueue import LeaseQueue


@dataclasses.dataclass(frozen=True)
class Sample:
    """One observation, ``seconds`` after the tracer started."""

    seconds: float
    pending: int  # waiting, including those in a retry backoff
    leased: int
    succeeded: int
    desired: int | None  # status.workers.desired
    parallelism: int | None  # the Job's spec.parallelism
    running: int  # worker pods Running and not terminating
    phase: str

    @property
    def depth(self) -> int:
        """Pending + leased items: what the autoscaler sizes the workers from."""
        return self.pending + self.leased


class Tracer:
    """Samples QueueJob ``namespace/name`` and its ``queue`` until stopped (a context manager)."""

    def __init__(
        self,
        api: client.ApiClient,
        queue: LeaseQueue,
        namespace: str,
        name: str,
        interval: float = 1.0,
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._batch = client.BatchV1Api(api)
        self._core = client.CoreV1Api(api)
        self._queue = queue
        self._namespace = namespace
        self._name = name
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoscaling-trace", daemon=True)
        self._started = 0.0
        self.samples: list[Sample] = []
        #: names of every worker pod seen (each scale-up or replacement starts new ones)
        self.pods_seen: set[str] = set()
        self.errors = 0

    def sample(self) -> Sample:
        """Take one sample now (also appended to :attr:`samples`)."""
        stats = self._queue.stats()
        qj: Any = self._custom.get_namespaced_custom_object(
            naming.GROUP, naming.VERSION, self._namespace, naming.PLURAL, self._name
        )
        status: dict[str, Any] = qj.get("status") or {}
        parallelism: int | None = None
        try:
            job = self._batch.read_namespaced_job(naming.job_name(self._name), self._namespace)
            parallelism = job.spec.parallelism if job.spec else None
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        pods = self._core.list_namespaced_pod(
            self._namespace, label_selector=f"{naming.QUEUEJOB_LABEL}={self._name}"
        ).items
        self.pods_seen.update(str(p.metadata.name) for p in pods if p.metadata)
        running = sum(
            1
            for p in pods
            if p.status is not None
            and p.status.phase == "Running"
            and not (p.metadata and p.metadata.deletion_timestamp)
        )
        sample = Sample(
            seconds=time.monotonic() - self._started,
            pending=stats.pending + stats.delayed,
            leased=stats.leased,
            succeeded=stats.succeeded,
            desired=(status.get("workers") or {}).get("desired"),
            parallelism=parallelism,
            running=running,
            phase=str(status.get("phase") or "-"),
        )
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.sample()
            except Exception:  # a blip of the API or Redis: skip this sample
                self.errors += 1
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - began)))

    def elapsed(self) -> float:
        """Seconds since the tracer started (the time base of the samples)."""
        return time.monotonic() - self._started

    def start(self) -> Tracer:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def __enter__(self) -> Tracer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def table(samples: list[Sample], bar_scale: int = 4) -> str:
    """The samples as a text table, with a bar of the queue depth (one '#' per ``bar_scale``
    items) and one of the running workers (one 'W' each)."""
    header = (
        f"{'t/s':>6} {'pending':>7} {'leased':>6} {'depth':>5} {'done':>5} {'desired':>7} "
        f"{'job.par':>7} {'running':>7}  {'phase':<9} depth | workers"
    )
    lines = [header, "-" * len(header)]
    for s in samples:

        def cell(v: int | None) -> str:
            return "-" if v is None else str(v)

        bar = "#" * -(-s.depth // bar_scale)
        lines.append(
            f"{s.seconds:6.1f} {s.pending:7d} {s.leased:6d} {s.depth:5d} {s.succeeded:5d} "
            f"{cell(s.desired):>7} {cell(s.parallelism):>7} {s.running:7d}  {s.phase:<9} "
            f"{bar} | {'W' * s.running}"
        )
    return "\n".join(lines)
