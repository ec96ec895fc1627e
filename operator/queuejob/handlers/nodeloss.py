"""In the background: let go of worker pods on lost nodes, so their slots are refilled.

Started with the operator (a startup handler; kopf runs only on the leader, so only the leader
scans) when ``QUEUEJOB_NODE_LOST_SECONDS`` > 0, stopped at cleanup. Every
:func:`queuejob.nodeloss.scan_period` seconds (5 s with the default 20 s; not the status
resync interval, which is minutes) it lists the Nodes. For each node that
:class:`queuejob.nodeloss.NodeWatch` reports lost (none while most nodes are not Ready), it
lists that node's worker pods (field and label selectors, every namespace); it patches each
unfinished one to ``Failed`` with ``DisruptionTarget``, deletes it with grace period 0 and
posts a Warning Event ``WorkerNodeLost`` on its QueueJob. See :mod:`queuejob.nodeloss` for why
and why it is safe.

API calls per scan: one Node list (from the watch cache); per lost node one pod list; per pod
let go a status patch, a delete, a Job get (to name the QueueJob in the Event) and an Event. A
failed call is logged and retried at the next scan; the loop never stops on an error. Pods let
go are counted in ``queuejob_node_lost_pods``. With ``QUEUEJOB_NAMESPACES`` set, pods outside
those namespaces (globs) are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fnmatch
from typing import Any

import kopf

from queuejob import kube, naming, nodeloss
from queuejob import settings as qj_settings
from queuejob.nodeloss import LostNode, NodeWatch
from queuejob.runtime import Runtime

TASK_KEY = "node_loss_task"


def _managed(namespace: str, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


async def _post_event(pod: dict[str, Any], reason_text: str, logger: kopf.Logger) -> None:
    """A Warning Event on the pod's QueueJob (found through the pod's Job), if it still exists."""
    job_name = nodeloss.owning_job(pod)
    namespace = pod["metadata"]["namespace"]
    job = await kube.read_job(namespace, job_name) if job_name else None
    for ref in ((job or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == naming.KIND:
            involved = {
                "apiVersion": ref["apiVersion"],
                "kind": naming.KIND,
                "name": ref["name"],
                "namespace": namespace,
                "uid": ref["uid"],
            }
            message = (
                f"worker pod {pod['metadata']['name']} let go: {reason_text}; its slot is "
                "refilled and its item goes back to the queue when its lease expires"
            )
            await kube.post_event(involved, "Warning", "WorkerNodeLost", message)
            return
    logger.debug(f"no QueueJob found for pod {namespace}/{pod['metadata']['name']}")


async def release_pods(
    lost: LostNode, patterns: tuple[str, ...], logger: kopf.Logger
) -> tuple[int, int]:
    """Let go of the unfinished worker pods on ``lost``; returns (worker pods seen there,
    pods let go now)."""
    pods = await kube.list_pods_on_node(lost.name, nodeloss.WORKER_SELECTOR)
    workers = [p for p in pods if nodeloss.is_worker_pod(p)]
    released = 0
    for pod in workers:
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if nodeloss.is_finished(pod) or not _managed(namespace, patterns):
            continue
        now = datetime.datetime.now(datetime.UTC)
        patch = nodeloss.failed_status_patch(pod, lost.reason, now)
        if not await kube.patch_pod_status(namespace, name, patch):
            continue  # gone, or changed since listed: looked at again at the next scan
        await kube.force_delete_pod(namespace, name, meta["uid"])
        released += 1
        logger.warning(f"Worker pod {namespace}/{name} marked Failed and deleted: {lost.reason}")
        try:
            await _post_event(pod, lost.reason, logger)
        except Exception as exc:  # the Event is a courtesy; the pod is let go already
            logger.info(f"No Event for {namespace}/{name}: {exc}")
    return len(workers), released


async def scan_once(watch: NodeWatch, patterns: tuple[str, ...], logger: kopf.Logger) -> int:
    """One scan (see the module doc); returns the number of pods let go."""
    nodes = await kube.list_nodes()
    released = 0
    was_disrupted = watch.disrupted
    found = watch.observe(nodes, datetime.datetime.now(datetime.UTC))
    if watch.disrupted != was_disrupted:
        if watch.disrupted:
            logger.warning(
                "Most nodes are not Ready at once: holding off lost-node handling until they "
                "recover (a control-plane outage looks the same from here)"
            )
        else:
            logger.info("Nodes Ready again: lost-node handling resumed")
    for lost in found:
        seen, now_released = await release_pods(lost, patterns, logger)
        released += now_released
        if seen == 0 and lost.name in watch.gone:
            watch.forget(lost.name)
    return released


async def _run(
    settings: qj_settings.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger
) -> None:
    watch = NodeWatch(lost_after=settings.node_lost_seconds)
    period = nodeloss.scan_period(settings.node_lost_seconds)
    while True:
        await asyncio.sleep(period)  # first after startup's other handlers (API client set up)
        try:
            released = await scan_once(watch, settings.namespaces, logger)
            runtime: Runtime | None = memo.get("runtime")
            if released and runtime is not None:
                runtime.metrics.node_lost_pods.inc(released)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(f"Lost-node scan failed, retrying in {period:.0f}s: {exc}")


@kopf.on.startup()
async def start_node_loss_scan(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Start the background scan when ``QUEUEJOB_NODE_LOST_SECONDS`` > 0."""
    settings = qj_settings.from_env()
    if settings.node_lost_seconds <= 0:
        logger.info("Lost-node handling is off (QUEUEJOB_NODE_LOST_SECONDS=0)")
        return
    memo[TASK_KEY] = asyncio.create_task(_run(settings, memo, logger), name="node-loss-scan")


@kopf.on.cleanup()
async def stop_node_loss_scan(memo: kopf.Memo, **_: Any) -> None:
    """Cancel the background scan, if it runs."""
    task = memo.get(TASK_KEY)
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
