"""An autoscaling trace: workers (desired, Job parallelism, Running pods) over time against the
queue depth (pending + leased items), with and without downscale stabilization.

``.venv/bin/python benchmarks/trace_autoscaling.py`` (a trace, not a test: it prints, it asserts
nothing). One fresh local control plane (``localkube.LocalCluster`` with its node agent: worker
pods run as local processes), one password-protected ``redis-server`` and ``queuejob operator``
(status refresh every second). For each stabilization window (``--windows``, default ``0 15``)
one QueueJob runs with ``autoscaling: {minParallelism 1, maxParallelism 5, itemsPerWorker 10}``
and 1 s of demo work per item: it starts with ``--first`` items, then ``--bursts`` bursts of
``--burst`` items are added straight to its queue (``LeaseQueue.seed``) every ``--every``
seconds, a queue that drains and refills. Sampled every second: the table of
``queuejob_demo.autoscaling_trace``. Printed per window: the table, the ScaledUp/ScaledDown
Events, the worker pods started (each scale-up starts pods; each scale-down stops workers, whose
items go back to the queue) and the time from the first burst to 5 Running workers, with ratios
to the first window (the baseline, 0 = no stabilization). The bursts must come before the queue
drains: items added straight to the queue of a QueueJob that already finished are not worked on
(`kubectl queuejob add` re-creates the Job for them; not this script's subject).
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
import tempfile
import time
from typing import Any

from kubernetes import client

from localkube.cluster import LocalCluster
from localkube.redis_server import RedisServer
from queuejob import naming
from queuejob_demo import kube as demo_kube
from queuejob_demo.autoscaling_trace import Sample, Tracer, table
from queuejob_demo.stack import OperatorProcess
from workqueue.redisqueue import LeaseQueue

NAMESPACE = "autoscaling-trace"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def body(name: str, items: int, window: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{naming.GROUP}/{naming.VERSION}",
        "kind": naming.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "items": [f"first-{i}" for i in range(items)],
            "autoscaling": {
                "minParallelism": 1,
                "maxParallelism": 5,
                "itemsPerWorker": 10,
                "scaleDownStabilizationSeconds": window,
            },
            "worker": {"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "1.0"}]},
        },
    }


def events(api: client.ApiClient, name: str) -> list[str]:
    found = client.CoreV1Api(api).list_namespaced_event(
        NAMESPACE, field_selector=f"involvedObject.name={name}"
    )
    return [
        f"{e.reason}: {e.message}" for e in found.items if e.reason in ("ScaledUp", "ScaledDown")
    ]


def run_one(
    api: client.ApiClient, server: RedisServer, window: int, args: argparse.Namespace
) -> dict[str, Any]:
    name = f"trace-w{window}"
    objects = client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(
        naming.GROUP, naming.VERSION, NAMESPACE, naming.PLURAL, body(name, args.first, window)
    )

    def queue_name() -> str | None:
        qj = demo_kube.get_queuejob(api, NAMESPACE, name)
        return (qj.get("status") or {}).get("queue")

    deadline = time.monotonic() + 120
    while (qname := queue_name()) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} was not seeded within 120 s")
        time.sleep(0.2)
    queue = LeaseQueue(server.client(), qname)
    with Tracer(api, queue, NAMESPACE, name, interval=1.0) as tracer:
        first_burst = 0.0
        for b in range(args.bursts):
            time.sleep(args.every if b else 2.0)
            queue.seed(f"burst{b}-{i}" for i in range(args.burst))
            first_burst = first_burst or tracer.elapsed()
            log(f"{name}: burst {b + 1} of {args.burst} items added")
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            phase = (demo_kube.get_queuejob(api, NAMESPACE, name).get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(1.0)
        time.sleep(1.0)
    samples: list[Sample] = tracer.samples
    return {
        "name": name,
        "window": window,
        "samples": samples,
        "events": events(api, name),
        "pods": len(tracer.pods_seen),
        "to_full": next((x.seconds - first_burst for x in samples if x.running >= 5), None),
        "seconds": samples[-1].seconds if samples else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[0, 15])
    parser.add_argument("--first", type=int, default=10)
    parser.add_argument("--burst", type=int, default=30)
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("--every", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    results = []
    with contextlib.ExitStack() as stack:
        work = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qj-trace-")))
        log("starting the local control plane")
        cluster = LocalCluster()
        cluster.start()
        stack.callback(cluster.stop)
        server = RedisServer(data_dir=work / "redis")
        server.start()
        stack.callback(server.stop)
        api = demo_kube.api_client(cluster.kubeconfig)
        stack.callback(api.close)
        demo_kube.apply_crd(api)
        demo_kube.ensure_namespace(api, NAMESPACE)
        operator = OperatorProcess(
            cluster.kubeconfig,
            redis_url=f"redis://127.0.0.1:{server.port}/0",
            redis_password=server.password,
            log_file=work / "operator.log",
            namespaces=(NAMESPACE,),
            extra_env={"QUEUEJOB_STATUS_INTERVAL": "1", "QUEUEJOB_STATUS_IDLE_INTERVAL": "4"},
        )
        stack.enter_context(operator)
        for window in args.windows:
            log(f"run: scaleDownStabilizationSeconds {window}")
            results.append(run_one(api, server, window, args))

    base = results[0]
    for r in results:
        print(f"\n## scaleDownStabilizationSeconds: {r['window']} ({r['name']})")
        print(table(r["samples"]))
        for line in r["events"]:
            print(f"  event {line}")
    print("\n## summary (ratios to the first window)")
    heading = ("window/s", "ScaledUp", "ScaledDown", "pods", "to 5 W/s", "run/s")
    print(" ".join(f"{h:>10}" for h in heading))
    for r in results:
        ups = sum(1 for e in r["events"] if e.startswith("ScaledUp"))
        downs = sum(1 for e in r["events"] if e.startswith("ScaledDown"))
        full = "-" if r["to_full"] is None else f"{r['to_full']:.1f}"
        print(
            f"{r['window']:>10} {ups:>10} {downs:>10} {r['pods']:>10} {full:>10} "
            f"{r['seconds']:>10.1f}"
            f"   pods x{r['pods'] / max(1, base['pods']):.2f}, run x"
            f"{r['seconds'] / max(1e-9, base['seconds']):.2f}"
        )


if __name__ == "__main__":
    main()
