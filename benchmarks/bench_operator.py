"""How fast does the operator take QueueJobs to Running, against a no-kopf floor?

``make bench-operator`` (a benchmark, not a test: it prints figures, it asserts nothing).

Two runs, each on a fresh local control plane (``localkube.LocalCluster``, no node agent: the
Jobs' pods stay Pending, so only the API work is measured) and one password-protected
``redis-server``:

- **operator**: ``queuejob operator`` (kopf, default settings, loopback endpoints) watches a
  namespace; the benchmark creates N QueueJobs (3 small items each, ``suspend: false``) from
  ``--concurrency`` threads and waits until every one has phase Running (or later);
- **floor**: the same N QueueJobs created the same way, reconciled by a minimal controller
  without kopf: one watch of the namespace feeds a pool of ``--concurrency`` worker threads
  (like a client-go controller's workers), and each new QueueJob gets what the operator must
  do, plainly, with the ``kubernetes`` client and ``workqueue``: add the cleanup finalizer,
  configure and seed the Redis queue, create the Secret and the Job (the operator's own
  manifests, ``queuejob.jobs``), post one Event for the phase change and patch the status to
  Running (an Event on every phase change, and a finalizer that removes the Redis keys).

Arrivals: closed loop by default (``--concurrency`` threads create as fast as they can); with
``--rate R`` (repeatable: one pair of runs per rate) open loop: the QueueJobs arrive at R per
second whatever happens to the earlier ones, for both runs. The achieved rate to Running
(QueueJobs / time from the first create to the last Running) is the capacity when it falls
short of R.

``--fairness`` runs the operator alone with two namespaces: A creates ``--count`` QueueJobs as
fast as ``--concurrency`` threads can while B creates one every 2 s until A's are all Running;
printed: B's creation->Running p50/p95/max (and A's time). ``--operator-env
PYTHONPATH=/other/checkout/operator`` runs another checkout's operator code (e.g. main) under
the same benchmark.

Both runs observe "Running" the same way (one watch). Printed per run: the time from the first
create to the last QueueJob Running, per-QueueJob latency (p50/p95/max), and the API requests per
QueueJob. Requests are counted exactly from the API server's **audit log** (policy: every request
at level Metadata): requests by the operator (the admin user, with user agents other than the
benchmark's own) or by the floor's reconciler (user agent ``queuejob-floor``) whose
``requestReceivedTimestamp`` lies in the measured window, each audit ID once. The benchmark's
own creates and its watch are not counted in either run. For the operator run the peak RSS of
its process tree is sampled every 50 ms from /proc (``VmHWM``, the kernel's high-water mark, is
read too; also its RSS before the first create), and the operator's own metrics are read at the
end of the window: handler runs per handler and their mean wait for a concurrency slot
(``queuejob_handler_*``). The floor's RSS is that of the benchmark process in the floor run (its
reconcilers, creator threads and watch). CPU seconds per QueueJob (/proc/PID/stat) are read for
the operator, for the floor's reconcilers (the benchmark process's CPU in the floor run minus
that in the operator run) and for the control plane with Redis. A table then gives every figure
of the operator against the floor's, with the ratio.

``--profile FILE`` records the operator with py-spy (raw collapsed stacks) from the first create
to the last Running; ``--tracemalloc FILE`` traces the operator's allocations from its start
(``benchmarks/memprobe``: slower, so no timing of that run means much) and, after the steady
state (or once all are Running without ``--steady``), writes a snapshot to FILE and prints how
much the live Python memory grew from just before the first create, by owner: the innermost
frame of this project's code (``queuejob``, ``workqueue``), else of kopf, else of the library
that allocated (imports apart), in all and per QueueJob;
``--operator-env NAME=VALUE`` passes a setting to the operator;
``--no-floor`` runs the operator alone (with ``--rate``, at that one rate).

``--steady SECONDS`` adds a steady-state measurement to the operator run, after every QueueJob
is Running: first ``--finish N`` of them are finished by the benchmark acting as their worker
(every item leased and completed straight in Redis, then the Job scaled to parallelism 0, as
workers exit when the queue is done) and the benchmark waits until the operator shows them
Succeeded with no active worker; the others stay Running and idle (their pods never start).
After ``--settle`` seconds, for SECONDS, it counts handler runs/s (operator metrics), API
requests/s (audit log) and Redis commands/s (``INFO stats`` of the Redis server, which only the
operator uses then) and the operator's CPU, and divides them by the idle QueueJobs (the
finished ones have no timer work) into a status cost per idle QueueJob per minute.

``--lag SECONDS`` measures the status lag (operator run only, after ``--steady`` if given, and
after ``--settle`` seconds): from an item's completion in Redis to the QueueJob's status
showing it. For SECONDS the benchmark acts as the workers of ``--active K`` QueueJobs (default:
all but the ``--finish`` ones): one item at a time leased then completed straight in Redis
(``LeaseQueue`` on the queue of ``status.queue``, with the admin client), at ``--lag-rate R``
completions per second in all, round-robin over the K QueueJobs, so that each changes every K/R
seconds; ``--lag-rate`` is repeatable: one window per rate, one after the other on the same
QueueJobs, each drained before the next. Every QueueJob needs items enough to stay Running
through the windows: ``--items`` of at least SECONDS x R / K + 1, summed over the rates (the
benchmark refuses fewer). Per completion it records the time
the complete call returned and the queue's succeeded count after it (its own completions
counted per QueueJob); one watch of the QueueJobs records, for every event, its time and
``status.counts.succeeded``. A completion's lag is the time of the first event whose count is
at least its own, minus its time. After the window the benchmark waits up to ``--lag-grace``
seconds (30) for the status to show the last completions; those never shown count as an
infinite lag: printed apart, and a percentile that falls on them prints as "> GRACE s" (they
waited at least that long). Printed: completions and the achieved rate, lag p50/p95/p99/max
(and p95 by third of the window: one growing from third to third means the operator falls
behind), the number never shown, and over the window the operator's CPU, handler runs/s (operator
metrics: the refreshes) and status patches/s (audit log). The lease and the complete both
notify the operator (``SPUBLISH``) within a millisecond, so the refresh that shows a completion
starts (almost) the whole ``QUEUEJOB_NOTIFY_DELAY`` after it, as for a worker whose items take
longer than that delay (a shorter item is shown sooner: its lease started the delay).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import datetime
import json
import math
import os
import pathlib
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

from localkube import components
from localkube.cluster import LocalCluster
from localkube.redis_server import RedisServer
from queuejob import jobs, naming, settings, spec
from queuejob_demo import kube as demo_kube
from queuejob_demo.stack import OperatorProcess
from workqueue.config import QueueConfig
from workqueue.redisqueue import LeaseQueue

RUNNING_OR_LATER = frozenset({"Running", "Succeeded", "Failed"})
BENCH_AGENT = "queuejob-bench"
FLOOR_AGENT = "queuejob-floor"
ADMIN_USER = "localkube-admin"
FINALIZER = settings.OperatorSettings().finalizer
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------- cluster
@contextlib.contextmanager
def audited_cluster(work: pathlib.Path, label: str) -> Iterator[tuple[LocalCluster, pathlib.Path]]:
    """A fresh LocalCluster (no node agent) whose API server writes a JSON audit log."""
    policy = work / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit_log = work / f"audit-{label}.log"
    for old in audit_files(audit_log):
        old.unlink()
    original = components.apiserver

    def apiserver_with_audit(*args: Any, **kwargs: Any) -> list[str]:
        return [
            *original(*args, **kwargs),
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]

    components.apiserver = apiserver_with_audit
    cluster = LocalCluster(node_agent=False)
    began = time.monotonic()
    try:
        cluster.start()
    finally:
        components.apiserver = original
    log(f"  [{label}] control plane up in {time.monotonic() - began:.1f}s ({cluster.server})")
    try:
        yield cluster, audit_log
    finally:
        cluster.stop()


def api_client(kubeconfig: pathlib.Path, agent: str, pool: int) -> client.ApiClient:
    api = demo_kube.api_client(kubeconfig)
    api.configuration.connection_pool_maxsize = pool
    api.user_agent = agent
    # The pool size is read when the REST client is built: rebuild it.
    api.rest_client = client.rest.RESTClientObject(api.configuration)
    return api


# ------------------------------------------------------------------------------------- workload
def queuejob_body(name: str, items: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{naming.GROUP}/{naming.VERSION}",
        "kind": naming.KIND,
        "metadata": {"name": name},
        "spec": {"items": [f"{name}-item-{i}" for i in range(items)], "suspend": False},
    }


class RunningWatch:
    """Records when each QueueJob of a namespace is first seen in phase Running or later."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.running_at: dict[str, float] = {}
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        listing: Any = objects.list_namespaced_custom_object(
            naming.GROUP, naming.VERSION, self.namespace, naming.PLURAL
        )
        rv = listing["metadata"]["resourceVersion"]
        self._ready.set()
        while True:
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    objects.list_namespaced_custom_object,
                    naming.GROUP, naming.VERSION, self.namespace, naming.PLURAL,
                    resource_version=rv, timeout_seconds=300,
                ):  # fmt: skip
                    obj = event["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    self.record(obj, time.time())
            except Exception:  # a broken stream: resume from the last resourceVersion
                if self._stopped:
                    return
                time.sleep(0.1)
            if self._stopped:
                return

    def record(self, obj: dict[str, Any], now: float) -> None:
        """One watch event's object, received at ``now``."""
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase")
        if phase in RUNNING_OR_LATER and name not in self.running_at:
            self.running_at[name] = now

    _stopped = False

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()  # type: ignore[no-untyped-call]


@dataclass
class HandlerFigures:
    """One handler's runs and its summed wait for a slot / work time (operator metrics)."""

    runs: float = 0.0
    wait_sum: float = 0.0
    work_sum: float = 0.0


def scrape_handlers(port: int) -> dict[str, HandlerFigures]:
    """Per handler (``name`` label ``handler:<id>``): runs granted a slot so far, summed slot wait
    and summed work time (the ``workqueue_*`` histograms of ``queuejob.metrics``)."""
    # A traced operator (--tracemalloc) can take tens of seconds to answer.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as response:
        text = response.read().decode()
    out: dict[str, HandlerFigures] = collections.defaultdict(HandlerFigures)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = sample.labels.get("name", "")
            if not label.startswith("handler:"):
                continue
            handler = label.removeprefix("handler:")
            if sample.name == "workqueue_queue_duration_seconds_count":
                out[handler].runs = sample.value
            elif sample.name == "workqueue_queue_duration_seconds_sum":
                out[handler].wait_sum = sample.value
            elif sample.name == "workqueue_work_duration_seconds_sum":
                out[handler].work_sum = sample.value
    return dict(out)


@dataclass
class RunResult:
    label: str
    count: int
    began: float
    created_at: dict[str, float]
    running_at: dict[str, float]
    ended: float
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    peak_rss: int = 0
    hwm_rss: int = 0
    handlers: dict[str, HandlerFigures] = field(default_factory=dict)
    steady: list[str] = field(default_factory=list)
    lag: list[str] = field(default_factory=list)
    rss: RssSampler | None = None
    rss_running: int = 0
    #: The RSS at the end of the run, after the steady state and lag windows (0: none ran).
    rss_end: int = 0
    cpu: CpuMeter | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.began

    def latencies(self) -> list[float]:
        return sorted(self.running_at[n] - self.created_at[n] for n in self.running_at)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


def wait_running(
    rw: RunningWatch, names: Sequence[str], label: str, timeout: float, check: Callable[[], None]
) -> float:
    """Wait until every name is Running; prints progress; returns the time of the last one."""
    deadline = time.monotonic() + timeout
    last_report = 0.0
    began = time.monotonic()
    while True:
        done = sum(1 for n in names if n in rw.running_at)
        now = time.monotonic()
        if now - last_report >= 1 or done == len(names):
            log(f"  [{label}] {done}/{len(names)} Running ({now - began:.1f}s)")
            last_report = now
        if done == len(names):
            return max(rw.running_at[n] for n in names)
        check()
        if now > deadline:
            raise TimeoutError(
                f"[{label}] only {done}/{len(names)} QueueJobs Running in {timeout}s"
            )
        time.sleep(0.1)


def create_all(
    api: client.ApiClient,
    namespace: str,
    names: Sequence[str],
    items: int,
    concurrency: int,
    per_object: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, float]:
    """Create the QueueJobs from ``concurrency`` threads; ``per_object`` runs after each create."""
    objects = client.CustomObjectsApi(api)
    created_at: dict[str, float] = {}

    def one(name: str) -> None:
        created_at[name] = time.time()
        body: Any = objects.create_namespaced_custom_object(
            naming.GROUP, naming.VERSION, namespace, naming.PLURAL, queuejob_body(name, items)
        )
        if per_object is not None:
            per_object(body)

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(one, n) for n in names]:
            future.result()
    return created_at


# ------------------------------------------------------------------------------------- floor
def floor_reconcile(
    api: client.ApiClient, redis_server: RedisServer, settings_image: str
) -> Callable[[dict[str, Any]], None]:
    """What the operator must do for one new QueueJob, written plainly (no kopf)."""
    core = client.CoreV1Api(api)
    batch = client.BatchV1Api(api)
    objects = client.CustomObjectsApi(api)
    redis_client = redis_server.client()
    worker_url = f"redis://127.0.0.1:{redis_server.port}/0"

    def reconcile(body: dict[str, Any]) -> None:
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        parsed = spec.parse(body["spec"])
        # The cleanup finalizer first: the Redis keys must not outlive a deleted QueueJob.
        objects.patch_namespaced_custom_object(
            naming.GROUP, naming.VERSION, ns, naming.PLURAL, name,
            {"metadata": {"finalizers": [FINALIZER]}},
        )  # fmt: skip
        queue = naming.queue_name(ns, name, meta["uid"])
        lq = LeaseQueue(redis_client, queue)
        lq.configure(
            QueueConfig(
                lease_seconds=float(parsed.lease_seconds),
                max_attempts=parsed.max_attempts,
                backoff_base=parsed.backoff.base_seconds,
                backoff_cap=parsed.backoff.cap_seconds,
                backoff_jitter=parsed.backoff.jitter,
            )
        )
        lq.seed(parsed.items or ())
        secret: Any = jobs.build_secret(body, redis_server.password or "")
        core.create_namespaced_secret(ns, secret)
        job: Any = jobs.build_job(
            body,
            parsed,
            queue=queue,
            redis_url=worker_url,
            default_image=settings_image,
            image_pull_policy="IfNotPresent",
            backoff_limit=10,
        )
        created: Any = batch.create_namespaced_job(ns, job)
        total = len(parsed.items or ())
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "phase": "Running",
                "progress": f"0/{total}",
                "counts": {"total": total, "pending": total, "leased": 0, "succeeded": 0,
                           "failed": 0, "retries": 0},
                "jobName": created.metadata.name,
                "queue": queue,
                "startTime": now,
                "observedGeneration": meta.get("generation", 1),
            }
        }  # fmt: skip
        event: Any = {
            "metadata": {"generateName": f"{name}."},
            "involvedObject": {
                "apiVersion": body["apiVersion"], "kind": body["kind"], "name": name,
                "namespace": ns, "uid": meta["uid"],
            },
            "type": "Normal", "reason": "JobCreated", "message": "Phase None -> Running",
            "source": {"component": "queuejob-floor"}, "firstTimestamp": now, "lastTimestamp": now,
            "count": 1,
        }  # fmt: skip
        core.create_namespaced_event(ns, event)
        objects.patch_namespaced_custom_object_status(
            naming.GROUP, naming.VERSION, ns, naming.PLURAL, name, status
        )

    return reconcile


class FloorController:
    """The floor as a controller: a watch of new QueueJobs feeding ``workers`` threads."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        reconcile: Callable[[dict[str, Any]], None],
        workers: int,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.reconcile = reconcile
        self.todo: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.errors: list[str] = []
        self._seen: set[str] = set()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._stopped = False
        self._ready = threading.Event()
        self._threads = [threading.Thread(target=self._watcher, daemon=True)] + [
            threading.Thread(target=self._worker, daemon=True) for _ in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._ready.wait(10)

    def _watcher(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        listing: Any = objects.list_namespaced_custom_object(
            naming.GROUP, naming.VERSION, self.namespace, naming.PLURAL
        )
        rv = listing["metadata"]["resourceVersion"]
        self._ready.set()
        while not self._stopped:
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    objects.list_namespaced_custom_object,
                    naming.GROUP, naming.VERSION, self.namespace, naming.PLURAL,
                    resource_version=rv, timeout_seconds=300,
                ):  # fmt: skip
                    obj = event["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    uid = obj["metadata"]["uid"]
                    if event["type"] == "ADDED" and uid not in self._seen:
                        self._seen.add(uid)
                        if not (obj.get("status") or {}).get("phase"):
                            self.todo.put(obj)
            except Exception:  # a broken stream: resume from the last resourceVersion
                time.sleep(0.1)

    def _worker(self) -> None:
        while (body := self.todo.get()) is not None:
            try:
                self.reconcile(body)
            except Exception as exc:
                self.errors.append(f"{body['metadata']['name']}: {exc}")

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()  # type: ignore[no-untyped-call]
        for _ in self._threads[1:]:
            self.todo.put(None)


def create_at_rate(
    api: client.ApiClient, namespace: str, names: Sequence[str], items: int, rate: float
) -> dict[str, float]:
    """Open loop: create ``names`` at ``rate`` per second, whatever the earlier ones do."""
    objects = client.CustomObjectsApi(api)
    created_at: dict[str, float] = {}

    def one(name: str) -> None:
        created_at[name] = time.time()
        objects.create_namespaced_custom_object(
            naming.GROUP, naming.VERSION, namespace, naming.PLURAL, queuejob_body(name, items)
        )

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(4, int(rate))) as pool:
        futures = []
        for i, name in enumerate(names):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, name))
        for future in futures:
            future.result()
    return created_at


def create(args: argparse.Namespace, api: client.ApiClient, ns: str, names: Sequence[str]) -> Any:
    """Create ``names`` closed loop (``--concurrency`` threads) or at ``args.rate``."""
    if args.rate:
        return create_at_rate(api, ns, names, args.items, args.rate)
    return create_all(api, ns, names, args.items, args.concurrency)


# ------------------------------------------------------------------------------------- audit
def count_requests(
    audit_log: pathlib.Path, since: float, until: float, accept: Callable[[dict[str, Any]], bool]
) -> collections.Counter[str]:
    """Requests in the audit log received in [since, until] whose event ``accept`` accepts.

    Keyed by ``verb resource[/subresource]``; each audit ID counted once.
    """
    seen: set[str] = set()
    counts: collections.Counter[str] = collections.Counter()
    for path in audit_files(audit_log):
        _count_file(path, since, until, accept, seen, counts)
    return counts


def audit_files(audit_log: pathlib.Path) -> list[pathlib.Path]:
    """The audit log and the files the API server rotated it into (``<stem>-<time>.log``, every
    100 MB: a run of 10,000 QueueJobs fills several), oldest first."""
    rotated = sorted(audit_log.parent.glob(f"{audit_log.stem}-*{audit_log.suffix}"))
    return [*rotated, audit_log] if audit_log.exists() else rotated


def _count_file(
    path: pathlib.Path,
    since: float,
    until: float,
    accept: Callable[[dict[str, Any]], bool],
    seen: set[str],
    counts: collections.Counter[str],
) -> None:
    with path.open() as f:
        for line in f:
            event = json.loads(line)
            if event["auditID"] in seen or not accept(event):
                continue
            received = datetime.datetime.fromisoformat(
                event["requestReceivedTimestamp"].replace("Z", "+00:00")
            ).timestamp()
            if not since <= received <= until:
                continue
            seen.add(event["auditID"])
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            counts[f"{event['verb']} {resource}"] += 1


def is_operator_request(event: dict[str, Any]) -> bool:
    """The operator uses the admin kubeconfig like the benchmark, but not its user agents."""
    user = (event.get("user") or {}).get("username")
    agent = event.get("userAgent") or ""
    return user == ADMIN_USER and not agent.startswith((BENCH_AGENT, FLOOR_AGENT))


# ------------------------------------------------------------------------------------- RSS
def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/*/stat)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents[ppid].append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the live processes ``pids`` have used so far (/proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


class RssSampler:
    """Samples the RSS of a process (``tree``: with its descendants) every ``interval`` seconds;
    keeps the first sample (``start``), the latest (``current``) and the peak."""

    def __init__(self, pid: int, interval: float = 0.05, *, tree: bool = True) -> None:
        self.pid = pid
        self.interval = interval
        self.tree = tree
        self.start = 0
        self.current = 0
        self.peak = 0
        self.hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sampled = threading.Event()

    def _run(self) -> None:
        pids, scanned = [self.pid], 0.0
        while not self._stop.is_set():
            if self.tree and time.monotonic() - scanned >= 1:  # the tree rarely changes
                pids, scanned = _tree(self.pid), time.monotonic()
            self.current = sum(_status_kb(p, "VmRSS") for p in pids)
            self.start = self.start or self.current
            self.peak = max(self.peak, self.current)
            self.hwm = max(self.hwm, sum(_status_kb(p, "VmHWM") for p in pids))
            self._sampled.set()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        self._sampled.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class CpuMeter:
    """CPU seconds used between ``begin()`` and ``end()`` by the operator process tree, the
    rest of the benchmark's children (control plane and redis-server) and the benchmark process
    itself (its creator threads, its watch and, in the floor run, the floor's reconcilers)."""

    def __init__(self, operator_pid: int | None = None) -> None:
        self.operator_pid = operator_pid
        self.operator = self.control_plane = self.bench = 0.0

    def _read(self) -> tuple[float, float, float]:
        me = os.getpid()
        ours = set(_tree(self.operator_pid)) if self.operator_pid else set()
        others = [p for p in _tree(me) if p != me and p not in ours]
        times = os.times()
        return cpu_seconds(sorted(ours)), cpu_seconds(others), times.user + times.system

    def begin(self) -> None:
        self._began = self._read()

    def end(self) -> None:
        ended = self._read()
        self.operator, self.control_plane, self.bench = (
            e - b for e, b in zip(ended, self._began, strict=True)
        )


# ------------------------------------------------------------------------------------- profile
@contextlib.contextmanager
def profiled(pid: int, output: pathlib.Path | None) -> Iterator[None]:
    """With ``output``: py-spy samples ``pid`` (raw collapsed stacks) until the block ends."""
    if output is None:
        yield
        return
    spy = subprocess.Popen(
        [str(pathlib.Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
         "--rate", "50", "--format", "raw", "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
        log(f"  py-spy profile of the operator: {output}")


# ------------------------------------------------------------------------------------- memory
MEMPROBE = pathlib.Path(__file__).resolve().parent / "memprobe"
BEFORE_SNAPSHOT = "before-first-create.tracemalloc"
#: Path fragments of this project's code, then kopf's: an allocation belongs to the innermost
#: frame in one of them (else to the innermost frame's library).
OWNERS = (("/queuejob/", "/workqueue/"), ("/kopf/",))


def operator_env(args: argparse.Namespace) -> dict[str, str]:
    """``--operator-env``, and with ``--tracemalloc`` the probe first on the ``PYTHONPATH``."""
    env = dict(kv.split("=", 1) for kv in args.operator_env)
    if args.tracemalloc is not None:
        path = env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MEMPROBE), path]))
        env["QUEUEJOB_BENCH_TRACEMALLOC"] = str(args.tracemalloc)
    return env


def owner_of(frames: Sequence[tracemalloc.Frame]) -> str:
    """``file:line`` of the frame an allocation is charged to (frames: most recent first)."""
    if any(f.filename.startswith("<frozen importlib") for f in frames):
        return "(imports)"
    for fragments in OWNERS:
        for frame in frames:
            if any(f in frame.filename for f in fragments):
                return f"{short_path(frame.filename)}:{frame.lineno}"
    return f"{short_path(frames[0].filename)}:{frames[0].lineno}" if frames else "?"


def short_path(filename: str) -> str:
    for marker in ("/site-packages/", "/operator/", "/lib/python3."):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3." else tail
    return filename


def memory_snapshot(
    pid: int, output: pathlib.Path, keep_as: pathlib.Path
) -> tracemalloc.Snapshot | None:
    """Signal the operator for a snapshot (``memprobe`` writes it to ``output``), keep it as
    ``keep_as`` and load it."""
    output.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 300
    while not output.exists():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)
    output.replace(keep_as)
    return tracemalloc.Snapshot.load(str(keep_as))


def by_owner(snapshot: tracemalloc.Snapshot) -> collections.Counter[str]:
    owners: collections.Counter[str] = collections.Counter()
    for stat in snapshot.statistics("traceback"):
        owners[owner_of(list(reversed(stat.traceback)))] += stat.size
    return owners


def memory_by_owner(
    before: tracemalloc.Snapshot | None, pid: int, output: pathlib.Path, count: int, top: int = 25
) -> list[str]:
    """The operator's live Python memory now, less that before the first create, by owner."""
    after = memory_snapshot(pid, output, output)
    if before is None or after is None:
        return [f"tracemalloc: no snapshot from the operator in {output.parent} after 300 s"]
    grown = by_owner(after)
    grown.subtract(by_owner(before))
    total = sum(grown.values())
    areas: collections.Counter[str] = collections.Counter()
    for owner, size in grown.items():
        areas[owner.split("/", 1)[0] if "/" in owner else owner.split(":", 1)[0]] += size
    per = max(1, count) * 1024
    lines = [
        f"tracemalloc: live Python memory grew by {total / 2**20:.1f} MiB from before the first "
        f"create ({total / per:.1f} KiB per QueueJob); snapshots {output} and "
        f"{output.with_name(BEFORE_SNAPSHOT)}",
        "  by area: " + ", ".join(f"{a} {b / 2**20:.2f} MiB" for a, b in areas.most_common(8)),
    ]
    for owner, size in grown.most_common(top):
        lines.append(f"  {size / 2**20:7.2f} MiB  {size / per:6.1f} KiB/QJ  {owner}")
    return lines


# ------------------------------------------------------------------------------------- runs
def run_floor(args: argparse.Namespace, work: pathlib.Path) -> RunResult:
    label, ns = "floor", "bench-floor"
    names = [f"qj-{i:04d}" for i in range(args.count)]
    with audited_cluster(work, label) as (cluster, audit_log), RedisServer() as redis_server:
        setup = api_client(cluster.kubeconfig, BENCH_AGENT, args.concurrency + 2)
        demo_kube.apply_crd(setup)
        demo_kube.ensure_namespace(setup, ns)
        floor_api = api_client(cluster.kubeconfig, FLOOR_AGENT, args.concurrency + 2)
        rw = RunningWatch(setup, ns)
        rw.start()
        reconcile = floor_reconcile(floor_api, redis_server, "queuejob:dev")
        controller = FloorController(floor_api, ns, reconcile, args.concurrency)
        controller.start()
        log(f"  [{label}] creating {args.count} QueueJobs; the floor's controller reconciles")

        def check() -> None:
            if controller.errors:
                raise RuntimeError(f"floor reconcile failed: {controller.errors[:3]}")

        cpu = CpuMeter()
        with RssSampler(os.getpid(), tree=False) as rss:
            cpu.begin()
            began = time.time()
            created_at = create(args, setup, ns, names)
            ended = wait_running(rw, names, label, args.timeout, check)
            cpu.end()
        rw.stop()
        controller.stop()
        result = RunResult(label, args.count, began, created_at, dict(rw.running_at), ended)
        result.rss, result.cpu = rss, cpu
        time.sleep(0.5)  # let the audit log catch up with the last responses
        result.requests = count_requests(
            audit_log, began, ended, lambda e: e.get("userAgent") == FLOOR_AGENT
        )
    return result


def run_operator(args: argparse.Namespace, work: pathlib.Path) -> RunResult:
    label, ns = "operator", "bench-operator"
    names = [f"qj-{i:04d}" for i in range(args.count)]
    with audited_cluster(work, label) as (cluster, audit_log), RedisServer() as redis_server:
        setup = api_client(cluster.kubeconfig, BENCH_AGENT, args.concurrency + 2)
        demo_kube.apply_crd(setup)
        demo_kube.ensure_namespace(setup, ns)
        operator = OperatorProcess(
            cluster.kubeconfig,
            redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
            redis_password=redis_server.password,
            log_file=work / "operator.log",
            namespaces=(ns,),
            extra_env=operator_env(args),
        )
        with operator, RssSampler(operator.pid) as rss:
            log(f"  [{label}] operator ready (pid {operator.pid}, log {operator.log_file})")
            rw = RunningWatch(setup, ns)
            rw.start()
            log(f"  [{label}] creating {args.count} QueueJobs")
            cpu = CpuMeter(operator.pid)
            before = (
                memory_snapshot(
                    operator.pid, args.tracemalloc, args.tracemalloc.with_name(BEFORE_SNAPSHOT)
                )
                if args.tracemalloc is not None
                else None
            )
            with profiled(operator.pid, args.profile):
                cpu.begin()
                began = time.time()
                created_at = create(args, setup, ns, names)
                ended = wait_running(rw, names, label, args.timeout, operator.check)
                cpu.end()
                rss_running = rss.current
            rw.stop()
            handlers = scrape_handlers(operator.metrics_port)
            steady: list[str] = []
            if args.steady > 0:
                steady = measure_steady(
                    args, setup, ns, names, redis_server, operator, audit_log, label
                )
            if args.tracemalloc is not None:
                steady += memory_by_owner(before, operator.pid, args.tracemalloc, args.count)
            lag: list[str] = []
            if args.lag > 0:
                for i, rate in enumerate(args.lag_rate):
                    lag += measure_lag(
                        args, setup, ns, names, redis_server, operator, audit_log, label, rate, i
                    )
            rss_end = rss.current if steady or lag else 0
        result = RunResult(label, args.count, began, created_at, dict(rw.running_at), ended)
        result.peak_rss, result.hwm_rss = rss.peak, rss.hwm
        result.rss, result.cpu, result.rss_running = rss, cpu, rss_running
        result.rss_end = rss_end
        result.handlers, result.steady, result.lag = handlers, steady, lag
        result.requests = count_requests(
            audit_log,
            began,
            ended,
            is_operator_request,
        )
    return result


def run_fairness(args: argparse.Namespace, work: pathlib.Path) -> list[str]:
    """Namespace A floods, namespace B creates one QueueJob every 2 s: B's latency."""
    label, flood_ns, single_ns = "fairness", "bench-a", "bench-b"
    flood = [f"qj-{i:04d}" for i in range(args.count)]
    with audited_cluster(work, label) as (cluster, _), RedisServer() as redis_server:
        setup = api_client(cluster.kubeconfig, BENCH_AGENT, args.concurrency + 4)
        demo_kube.apply_crd(setup)
        for ns in (flood_ns, single_ns):
            demo_kube.ensure_namespace(setup, ns)
        operator = OperatorProcess(
            cluster.kubeconfig,
            redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
            redis_password=redis_server.password,
            log_file=work / "operator-fairness.log",
            namespaces=(flood_ns, single_ns),
            extra_env=dict(kv.split("=", 1) for kv in args.operator_env),
        )
        with operator:
            flood_watch, single_watch = (
                RunningWatch(setup, flood_ns),
                RunningWatch(setup, single_ns),
            )
            flood_watch.start()
            single_watch.start()
            singles: dict[str, float] = {}
            objects = client.CustomObjectsApi(setup)
            began = time.time()
            creator = threading.Thread(
                target=create_all,
                args=(setup, flood_ns, flood, args.items, args.concurrency),
                daemon=True,
            )
            creator.start()
            i = 0
            while i == 0 or sum(1 for n in flood if n in flood_watch.running_at) < len(flood):
                name = f"b-{i:03d}"
                singles[name] = time.time()
                objects.create_namespaced_custom_object(
                    naming.GROUP, naming.VERSION, single_ns, naming.PLURAL,
                    queuejob_body(name, args.items),
                )  # fmt: skip
                i += 1
                operator.check()
                if time.time() - began > args.timeout:
                    raise TimeoutError(f"[{label}] A not all Running in {args.timeout}s")
                time.sleep(2)
            creator.join()
            flood_done = max(flood_watch.running_at.values()) - began
            wait_running(single_watch, list(singles), label, args.timeout, operator.check)
            flood_watch.stop()
            single_watch.stop()
    lat = sorted(single_watch.running_at[n] - singles[n] for n in singles)
    return [
        f"fairness: A created {len(flood)} QueueJobs ({args.concurrency} threads), all Running "
        f"in {flood_done:.2f}s; B created {len(lat)}, one every 2 s meanwhile",
        f"  B creation->Running p50 {statistics.median(lat):.2f}s p95 "
        f"{_percentile(lat, 0.95):.2f}s max {lat[-1]:.2f}s",
    ]


# ------------------------------------------------------------------------------------- steady
def finish_queuejobs(
    api: client.ApiClient, ns: str, names: Sequence[str], redis_server: RedisServer
) -> None:
    """Act as the workers of ``names``: complete every item in Redis, then scale the Job to 0."""
    objects = client.CustomObjectsApi(api)
    batch = client.BatchV1Api(api)
    redis_client = redis_server.client()
    for name in names:
        body: Any = objects.get_namespaced_custom_object(
            naming.GROUP, naming.VERSION, ns, naming.PLURAL, name
        )
        queue = LeaseQueue(redis_client, body["status"]["queue"])
        while leases := queue.lease("bench-worker", n=100):
            queue.complete_many(leases)
        batch.patch_namespaced_job(naming.job_name(name), ns, {"spec": {"parallelism": 0}})


def wait_finished(
    api: client.ApiClient, ns: str, names: Sequence[str], label: str, timeout: float
) -> None:
    """Wait until every one of ``names`` is Succeeded with no active worker left."""
    objects = client.CustomObjectsApi(api)
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        listing: Any = objects.list_namespaced_custom_object(
            naming.GROUP, naming.VERSION, ns, naming.PLURAL
        )
        done = sum(
            1
            for obj in listing["items"]
            if obj["metadata"]["name"] in wanted
            and (obj.get("status") or {}).get("phase") == "Succeeded"
            and not (obj.get("status") or {}).get("activeWorkers")
        )
        log(f"  [{label}] {done}/{len(wanted)} finished QueueJobs Succeeded, no worker left")
        if done == len(wanted):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"[{label}] only {done}/{len(wanted)} finished in {timeout}s")
        time.sleep(2)


def redis_commands(redis_server: RedisServer) -> tuple[int, int]:
    """Commands the Redis server has processed so far (``INFO stats``: this counts the commands
    run inside Lua scripts too) and script calls (EVALSHA + EVAL + FCALL, ``INFO commandstats``)."""
    c = redis_server.client()
    stats: Any = c.info("stats")
    commandstats: Any = c.info("commandstats")
    scripts = sum(
        int(commandstats.get(k, {}).get("calls", 0))
        for k in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall")
    )
    return int(stats["total_commands_processed"]), scripts


def measure_steady(
    args: argparse.Namespace,
    api: client.ApiClient,
    ns: str,
    names: Sequence[str],
    redis_server: RedisServer,
    operator: OperatorProcess,
    audit_log: pathlib.Path,
    label: str,
) -> list[str]:
    """Finish ``--finish`` QueueJobs, then measure the status cost for ``--steady`` seconds."""
    finished = list(names[: args.finish])
    if finished:
        log(f"  [{label}] finishing {len(finished)} QueueJobs (items completed, Job scaled to 0)")
        finish_queuejobs(api, ns, finished, redis_server)
        wait_finished(api, ns, finished, label, args.timeout)
    idle = len(names) - len(finished)
    if args.settle:
        log(f"  [{label}] settling for {args.settle}s")
        time.sleep(args.settle)
    log(f"  [{label}] steady state: {idle} idle Running + {len(finished)} finished, {args.steady}s")
    before = scrape_handlers(operator.metrics_port)
    commands_before = redis_commands(redis_server)
    cpu_before = cpu_seconds(_tree(operator.pid))
    began = time.time()
    time.sleep(args.steady)
    ended = time.time()
    cpu = cpu_seconds(_tree(operator.pid)) - cpu_before
    commands_after = redis_commands(redis_server)
    after = scrape_handlers(operator.metrics_port)
    operator.check()
    time.sleep(0.5)  # let the audit log catch up
    requests = count_requests(audit_log, began, ended, is_operator_request)
    seconds = ended - began
    runs = {h: after[h].runs - before.get(h, HandlerFigures()).runs for h in after}
    lines = [
        f"steady state over {seconds:.0f}s with {idle} idle Running and {len(finished)} finished "
        f"QueueJobs (status_interval {settings.OperatorSettings().status_interval}s):",
        f"  handler runs/s {sum(runs.values()) / seconds:7.2f}  ("
        + ", ".join(f"{h} {n / seconds:.2f}" for h, n in sorted(runs.items()) if n)
        + ")",
        f"  API requests/s {sum(requests.values()) / seconds:7.2f}  ("
        + ", ".join(f"{k} {n / seconds:.2f}" for k, n in requests.most_common())
        + ")",
        # minus the two INFO calls of the second reading
        f"  Redis commands/s {(commands_after[0] - commands_before[0] - 2) / seconds:7.2f} "
        f"(incl. those inside Lua scripts); script calls/s "
        f"{(commands_after[1] - commands_before[1]) / seconds:.2f}",
        f"  operator CPU {100 * cpu / seconds:.1f}% of a core (kopf's timer ticks included)",
    ]
    if idle:
        per_minute = 60 / seconds / idle
        lines.append(
            f"  status cost per idle QueueJob per minute: handler runs "
            f"{sum(runs.values()) * per_minute:.2f}, API requests "
            f"{sum(requests.values()) * per_minute:.2f}, Redis script calls "
            f"{(commands_after[1] - commands_before[1]) * per_minute:.2f}, operator CPU "
            f"{1000 * cpu * per_minute:.1f} ms (all charged to the idle ones)"
        )
    return lines


# ------------------------------------------------------------------------------------- lag
class SucceededWatch(RunningWatch):
    """Records, for every watch event, its time and the QueueJob's ``status.counts.succeeded``
    (what a refresh writes; ``queuejob.handlers.refresh``)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(api, namespace)
        self.shown: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)

    def record(self, obj: dict[str, Any], now: float) -> None:
        super().record(obj, now)
        counts = (obj.get("status") or {}).get("counts") or {}
        succeeded = counts.get("succeeded")
        if isinstance(succeeded, int):
            self.shown[obj["metadata"]["name"]].append((now, succeeded))

    def first_shown(self, name: str, succeeded: int, after: int = 0) -> tuple[float, int] | None:
        """The first event (from index ``after`` on) whose count is at least ``succeeded``, as
        (time, index), or None when no event showed it yet."""
        events = self.shown.get(name, [])
        for i in range(after, len(events)):
            if events[i][1] >= succeeded:
                return events[i][0], i
        return None


@dataclass
class Completion:
    """One item completed by the benchmark: when the complete call returned, and the queue's
    succeeded count just after it."""

    name: str
    at: float
    succeeded: int


def lag_items_needed(args: argparse.Namespace) -> int:
    """Items per QueueJob for ``--lag``: the completions of the busiest active one, plus one
    so that none runs out of items (and goes Succeeded) within the window."""
    rates: list[float] = args.lag_rate
    seconds: float = args.lag
    return sum(math.ceil(seconds * rate / lag_active(args)) for rate in rates) + 1


def lag_active(args: argparse.Namespace) -> int:
    active: int = args.active or args.count
    return min(active, int(args.count) - int(args.finish))


def complete_at_rate(
    queues: dict[str, LeaseQueue], base: dict[str, int], rate: float, seconds: float, label: str
) -> tuple[list[Completion], int, float, float]:
    """Act as the workers of ``queues``: one item leased then completed at a time, at ``rate``
    per second in all, round-robin over the QueueJobs, for ``seconds``. Returns the
    completions, the leases that found nothing to lease, and the window's start and end."""
    names = list(queues)
    done = dict(base)
    completions: list[Completion] = []
    empty = 0
    began = time.time()
    start = time.monotonic()
    end = start + seconds
    last_report = start
    i = 0
    while (due := start + i / rate) < end:
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        name = names[i % len(names)]
        i += 1
        leases = queues[name].lease(f"bench-worker-{name}", n=1)
        if not leases:
            empty += 1
            queues[name].close()
            continue
        queues[name].complete(leases[0])
        # Give the worker connection back: one pool (100 connections) serves all QueueJobs.
        queues[name].close()
        done[name] += 1
        completions.append(Completion(name, time.time(), done[name]))
        now = time.monotonic()
        if now - last_report >= 10:
            log(f"  [{label}] {len(completions)} completions in {now - start:.0f}s")
            last_report = now
    return completions, empty, began, time.time()


def lags_of(watch: SucceededWatch, completions: Sequence[Completion]) -> list[float]:
    """Each completion's lag: the first watched status with its count, minus its time (inf when
    none showed it). A QueueJob's completions come in count order, so each search starts where
    the previous one found its event."""
    lags: list[float] = []
    resume: dict[str, int] = collections.defaultdict(int)
    for c in completions:
        found = watch.first_shown(c.name, c.succeeded, resume[c.name])
        if found is None:
            lags.append(math.inf)
            resume[c.name] = len(watch.shown.get(c.name, []))
        else:
            lags.append(found[0] - c.at)
            resume[c.name] = found[1]
    return lags


def measure_lag(
    args: argparse.Namespace,
    api: client.ApiClient,
    ns: str,
    names: Sequence[str],
    redis_server: RedisServer,
    operator: OperatorProcess,
    audit_log: pathlib.Path,
    label: str,
    rate: float,
    index: int,
) -> list[str]:
    """Complete items of ``--active`` QueueJobs at ``rate`` for ``--lag`` seconds; each
    completion's lag to the QueueJob's status showing it (``index``: windows run before)."""
    objects = client.CustomObjectsApi(api)
    redis_client = redis_server.client()
    # The ones --steady finished are Succeeded: the active ones come after them.
    active = list(names[args.finish :][: lag_active(args)])
    queues: dict[str, LeaseQueue] = {}
    base: dict[str, int] = {}
    for name in active:
        body: Any = objects.get_namespaced_custom_object(
            naming.GROUP, naming.VERSION, ns, naming.PLURAL, name
        )
        status = body.get("status") or {}
        queue_name = status.get("queue") or naming.queue_name(ns, name, body["metadata"]["uid"])
        queues[name] = LeaseQueue(redis_client, queue_name)
        base[name] = queues[name].stats().succeeded
    if args.settle and not args.steady and not index:
        log(f"  [{label}] settling for {args.settle}s")
        time.sleep(args.settle)
    sw = SucceededWatch(api, ns)
    sw.start()
    log(
        f"  [{label}] lag: completing items of {len(active)} QueueJobs at {rate:g}/s "
        f"for {args.lag:g}s (each changes every {len(active) / rate:.2f}s)"
    )
    before = scrape_handlers(operator.metrics_port)
    cpu_before = cpu_seconds(_tree(operator.pid))
    completions, empty, began, ended = complete_at_rate(queues, base, rate, args.lag, label)
    cpu = cpu_seconds(_tree(operator.pid)) - cpu_before
    after = scrape_handlers(operator.metrics_port)
    # The drain: until every completion is shown, or --lag-grace seconds.
    drain_end = time.monotonic() + args.lag_grace
    while True:
        lags = lags_of(sw, completions)
        unshown = sum(1 for lag in lags if math.isinf(lag))
        if not unshown or time.monotonic() > drain_end:
            break
        operator.check()
        time.sleep(0.5)
    drained = time.time() - ended
    sw.stop()
    operator.check()
    time.sleep(0.5)  # let the audit log catch up
    requests = count_requests(audit_log, began, ended, is_operator_request)
    seconds = ended - began
    window = {
        h: HandlerFigures(
            after[h].runs - before.get(h, HandlerFigures()).runs,
            after[h].wait_sum - before.get(h, HandlerFigures()).wait_sum,
            after[h].work_sum - before.get(h, HandlerFigures()).work_sum,
        )
        for h in after
    }
    # By third of the window (completions in time order): a p95 that grows from one third to
    # the next means the operator falls behind, not a steady lag.
    thirds = [sorted(lags[i * len(lags) // 3 : (i + 1) * len(lags) // 3]) for i in range(3)]
    lags = sorted(lags)

    def pct(q: float, values: Sequence[float] = lags) -> str:
        if not values:
            return "-"
        value = _percentile(values, q)
        return f"> {args.lag_grace:g}s" if math.isinf(value) else f"{value:.3f}s"

    status_patches = sum(n for k, n in requests.items() if k.endswith("queuejobs/status"))
    notify_delay = operator_setting(
        args, "QUEUEJOB_NOTIFY_DELAY", settings.OperatorSettings().notify_delay
    )
    handlers_setting = "max_concurrent_handlers " + operator_setting(
        args,
        "QUEUEJOB_MAX_CONCURRENT_HANDLERS",
        settings.OperatorSettings().max_concurrent_handlers,
    )
    lines = [
        f"status lag over {seconds:.1f}s: {len(completions)} completions on {len(active)} "
        f"active of {len(names)} QueueJobs, {len(completions) / seconds:.1f}/s achieved "
        f"({rate:g}/s asked; {empty} leases found nothing; notify_delay "
        f"{notify_delay})",
        f"  lag (completion -> watched status.counts.succeeded shows it): p50 {pct(0.5)} "
        f"p95 {pct(0.95)} p99 {pct(0.99)} max {pct(1.0)}",
        "  lag p95 by third of the window: " + " / ".join(pct(0.95, t) for t in thirds),
        f"  never shown: {unshown} of {len(completions)} (drain {drained:.1f}s of at most "
        f"{args.lag_grace:g}s after the window)",
        f"  operator CPU {100 * cpu / seconds:.1f}% of a core over the window",
        f"  handler runs/s {sum(f.runs for f in window.values()) / seconds:7.2f}  ("
        + ", ".join(
            f"{h} {f.runs / seconds:.2f}, mean wait for a slot {f.wait_sum / f.runs:.3f}s, "
            f"mean work {f.work_sum / f.runs:.3f}s"
            for h, f in sorted(window.items())
            if f.runs
        )
        + f"; refresh workers: max_concurrent_handlers // 2, {handlers_setting})",
        f"  status patches/s {status_patches / seconds:.2f}; API requests/s "
        f"{sum(requests.values()) / seconds:.2f}  ("
        + ", ".join(f"{k} {n / seconds:.2f}" for k, n in requests.most_common())
        + ")",
    ]
    return lines


def operator_setting(args: argparse.Namespace, name: str, default: object) -> str:
    """The value ``--operator-env`` gives ``name``, else the default."""
    for kv in args.operator_env:
        key, _, value = kv.partition("=")
        if key == name:
            return f"{value} (--operator-env)"
    return f"{default} (default)"


# ------------------------------------------------------------------------------------- report
def _percentile(values: Sequence[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def compare(floor: RunResult, operator: RunResult) -> list[str]:
    """Operator vs floor, figure by figure, with the ratio."""

    def row(what: str, op: float, fl: float, unit: str, fmt: str = ".2f") -> str:
        ratio = f"{op / fl:6.2f}x" if fl else "     -"
        return f"  {what:<34}{op:10{fmt}} {unit:<4}{fl:10{fmt}} {unit:<4}{ratio}"

    lo, lf = operator.latencies(), floor.latencies()
    lines = [
        f"  {'':<34}{'operator':>15}{'floor':>15}   ratio",
        row("time to all Running", operator.seconds, floor.seconds, "s"),
        row("creation->Running p50", statistics.median(lo), statistics.median(lf), "s"),
        row("creation->Running p95", _percentile(lo, 0.95), _percentile(lf, 0.95), "s"),
        row("creation->Running max", lo[-1], lf[-1], "s"),
        row(
            "API requests per QueueJob",
            operator.total_requests / operator.count,
            floor.total_requests / floor.count,
            "",
        ),
    ]
    if operator.rss is not None and floor.rss is not None:
        lines.append(row("peak RSS (MiB)", operator.peak_rss / 2**20, floor.rss.peak / 2**20, ""))
    if operator.cpu is not None and floor.cpu is not None:
        lines += [
            row(
                "CPU ms per QJ: control plane+redis",
                1000 * operator.cpu.control_plane / operator.count,
                1000 * floor.cpu.control_plane / floor.count,
                "",
            ),
            row(
                "CPU ms per QJ: operator | floor's",
                1000 * operator.cpu.operator / operator.count,
                1000 * max(0.0, floor.cpu.bench - operator.cpu.bench) / floor.count,
                "",
            ),
        ]
    lines += [
        "  (floor's RSS: the benchmark process in the floor run, i.e. the floor's reconcilers",
        "   plus the creator threads and the watch; floor's CPU: the benchmark process's CPU",
        "   in the floor run minus that in the operator run, i.e. the reconcilers alone)",
    ]
    return lines


def describe_memory(result: RunResult) -> str:
    rss = result.rss
    if rss is None:
        return ""
    end = f", {result.rss_end / 2**20:.1f} MiB at the end of the run" if result.rss_end else ""
    return (
        f"operator RSS: {rss.start / 2**20:.1f} MiB before the first create, "
        f"{result.rss_running / 2**20:.1f} MiB at the last Running{end}, peak "
        f"{rss.peak / 2**20:.1f} MiB (VmHWM {result.hwm_rss / 2**20:.1f} MiB; sampled every 50 ms)"
    )


def describe(result: RunResult) -> list[str]:
    lat = result.latencies()
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    lines = [
        f"{result.label:>8}: {result.count} QueueJobs Running in {result.seconds:6.2f}s "
        f"({result.count / result.seconds:6.1f}/s); creation->Running p50 "
        f"{statistics.median(lat):.2f}s p95 {p95:.2f}s max {lat[-1]:.2f}s",
        f"{'':>8}  API requests: {result.total_requests} = "
        f"{result.total_requests / result.count:.1f} per QueueJob",
    ]
    for key, n in sorted(result.requests.items(), key=lambda kv: -kv[1]):
        lines.append(f"{'':>12}{n / result.count:6.2f}/QJ  {key}")
    if result.handlers:
        lines.append(f"{'':>8}  handler runs (operator metrics, until the last Running):")
    for handler, figures in sorted(result.handlers.items(), key=lambda kv: -kv[1].runs):
        if figures.runs:
            wait, work = figures.wait_sum / figures.runs, figures.work_sum / figures.runs
            lines.append(
                f"{'':>12}{figures.runs / result.count:6.2f}/QJ  {handler}: mean wait for a slot "
                f"{wait:.3f}s, mean work {work:.3f}s"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="QueueJobs per run [200]")
    parser.add_argument("--items", type=int, default=3, help="items per QueueJob [3]")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="client threads creating QueueJobs, and the floor's reconcilers; the operator's "
        "default QUEUEJOB_MAX_CONCURRENT_HANDLERS is also 10 [10]",
    )
    parser.add_argument("--timeout", type=float, default=600, help="per run [600s]")
    parser.add_argument(
        "--log-dir",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parents[1] / ".build" / "bench-operator",
        help="where the operator log and the audit logs are kept [.build/bench-operator]",
    )
    parser.add_argument(
        "--steady",
        type=float,
        default=0,
        help="after all Running, measure the operator's steady-state status cost for this many "
        "seconds (0: off) [0]",
    )
    parser.add_argument(
        "--finish",
        type=int,
        default=0,
        help="with --steady: QueueJobs the benchmark finishes first (the rest stay idle) [0]",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0,
        help="with --steady or --lag: seconds to wait before measuring (lets idle refreshes "
        "back off) [0]",
    )
    parser.add_argument(
        "--lag",
        type=float,
        default=0,
        metavar="SECONDS",
        help="after all Running (and --steady), measure the status lag for this many seconds: "
        "the benchmark completes items of --active QueueJobs at --lag-rate; needs --items of at "
        "least lag x lag-rate / active + 1, so that no active QueueJob runs out of items "
        "(0: off) [0]",
    )
    parser.add_argument(
        "--lag-rate",
        type=float,
        action="append",
        default=[],
        metavar="R",
        help="with --lag: completions per second in all, round-robin over the active "
        "QueueJobs (repeatable: one window per rate, one after the other on the same "
        "QueueJobs; --items must then cover them all) [10]",
    )
    parser.add_argument(
        "--active",
        type=int,
        default=0,
        metavar="K",
        help="with --lag: QueueJobs whose items the benchmark completes (0: all but the "
        "--finish ones) [0]",
    )
    parser.add_argument(
        "--lag-grace",
        type=float,
        default=30,
        help="with --lag: seconds after the window to wait for the status to show the last "
        "completions; those still not shown count as never shown [30]",
    )
    parser.add_argument(
        "--profile",
        type=pathlib.Path,
        default=None,
        help="write a py-spy profile (raw collapsed stacks) of the operator from the first "
        "create to the last Running to this file (needs py-spy next to the Python) [off]",
    )
    parser.add_argument(
        "--tracemalloc",
        type=pathlib.Path,
        default=None,
        help="trace the operator's allocations and print its live memory by owner once all are "
        "Running (after --steady), snapshot kept in this file [off]",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the operator, e.g. QUEUEJOB_MAX_CONCURRENT_HANDLERS=20 "
        "(repeatable) [none]",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor run (profiling only) [off]"
    )
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        default=[],
        help="open loop: QueueJobs arrive at this many per second (repeatable: one operator "
        "and one floor run per rate) [closed loop]",
    )
    parser.add_argument(
        "--fairness",
        action="store_true",
        help="the fairness scenario (operator only): A floods --count, B one every 2 s [off]",
    )
    args = parser.parse_args(argv)
    if args.lag > 0:
        args.lag_rate = args.lag_rate or [10.0]
        if min(args.lag_rate) <= 0 or args.active < 0 or lag_active(args) <= 0:
            parser.error("--lag needs --lag-rate > 0 and at least one active QueueJob")
        if args.items < lag_items_needed(args):
            parser.error(
                f"--lag {args.lag:g} at --lag-rate {' + '.join(f'{r:g}' for r in args.lag_rate)} "
                f"over {lag_active(args)} "
                f"QueueJobs needs --items {lag_items_needed(args)} or more"
            )
    rates: list[float] = args.rate
    args.rate = None
    if args.fairness:
        log(f"bench-operator fairness: A {args.count} QueueJobs at once, B one every 2 s")
        args.log_dir.mkdir(parents=True, exist_ok=True)
        for line in run_fairness(args, args.log_dir):
            log(line)
        return 0
    if rates and args.no_floor:
        if len(rates) > 1:
            parser.error("--no-floor takes at most one --rate")
        args.rate = rates[0]
    elif rates:
        args.log_dir.mkdir(parents=True, exist_ok=True)
        summary = []
        for rate in rates:
            args.rate = rate
            log(f"open loop at {rate:g}/s: {args.count} QueueJobs, floor then operator")
            fl = run_floor(args, args.log_dir)
            op = run_operator(args, args.log_dir)
            for line in describe(fl) + describe(op):
                log(line)
            lo, lf = op.latencies(), fl.latencies()
            summary.append(
                f"  {rate:6g}/s  operator {op.count / op.seconds:6.1f}/s p50 "
                f"{statistics.median(lo):6.2f}s p95 {_percentile(lo, 0.95):6.2f}s | floor "
                f"{fl.count / fl.seconds:6.1f}/s p50 {statistics.median(lf):6.2f}s p95 "
                f"{_percentile(lf, 0.95):6.2f}s | ratio capacity "
                f"{(op.count / op.seconds) / (fl.count / fl.seconds):.2f}x p95 "
                f"{_percentile(lo, 0.95) / _percentile(lf, 0.95):.2f}x"
            )
        log("open loop summary (achieved rate to Running = first create to last Running):")
        for line in summary:
            log(line)
        return 0

    arrivals = f"arriving at {args.rate:g}/s" if args.rate else "closed loop"
    log(
        f"bench-operator: {args.count} QueueJobs x {args.items} items ({arrivals}), "
        "creation -> Running"
    )
    work: pathlib.Path = args.log_dir
    work.mkdir(parents=True, exist_ok=True)
    if args.no_floor:
        log("operator only (--no-floor)")
        operator = run_operator(args, work)
        for line in describe(operator):
            log(line)
        log(describe_memory(operator))
        if operator.cpu is not None:
            log(f"operator CPU: {1000 * operator.cpu.operator / operator.count:.1f} ms per QJ")
        for line in operator.steady + operator.lag:
            log(line)
        return 0
    log("run 1/2: floor (same API writes, no kopf)")
    floor = run_floor(args, work)
    log("run 2/2: operator (queuejob operator, kopf)")
    operator = run_operator(args, work)

    log("")
    log("results (requests counted from the API server's audit log, per user agent):")
    for line in describe(floor) + describe(operator):
        log(line)
    log(
        f"ratio operator/floor: time {operator.seconds / floor.seconds:.2f}x, "
        f"API requests {operator.total_requests / max(1, floor.total_requests):.2f}x"
    )
    log("operator vs floor:")
    for line in compare(floor, operator):
        log(line)
    defaults = settings.OperatorSettings()
    log(
        f"operator settings: defaults (max_concurrent_handlers={defaults.max_concurrent_handlers}, "
        f"kopf_max_workers={defaults.kopf_max_workers}, status_interval="
        f"{defaults.status_interval}s); floor and creators: {args.concurrency} threads"
    )
    log(f"logs (operator, audit) kept in {work}")
    log(describe_memory(operator))
    log(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for line in operator.steady + operator.lag:
        log(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
