"""Worker autoscaling: the refresh timer's hook and the handlers for spec changes around it.

With ``spec.autoscaling`` set, the operator owns the worker Job's ``parallelism`` (and, Indexed,
its ``completions``): on every status refresh of a Running QueueJob, :func:`sync_workers` asks
the :class:`queuejob.autoscaler.Stabilizer` for the worker count from pending + leased items and
patches the Job when it differs (:func:`queuejob.jobs.scale_fields`), with a Normal Event
ScaledUp or ScaledDown. Guarantees:

- autoscaling wins over ``spec.parallelism`` (also when set by ``kubectl scale qj``): while
  ``spec.autoscaling`` is set, spec.parallelism is not applied to the Job; a change to it posts a
  Warning Event ParallelismOverridden and the condition Autoscaling says so. Removing
  ``spec.autoscaling`` hands the Job back to spec.parallelism at once (condition Autoscaling
  False, reason Disabled);
- the Job is scaled only while the QueueJob is Running: not while suspended (the Job keeps its
  parallelism; scaling resumes with the QueueJob), not once the queue is done or the Job failed
  (workers exit 0 by themselves when the queue is done, and every index of the Job must see that
  for it to complete; shrinking it then would strand indexes that never ran);
- scaling to 0 (``minParallelism: 0``) sets only ``parallelism``: ``completions`` stays > 0, so
  the Job does not complete and scales up again when work arrives. A scale-down stops the
  highest-index workers (the Job controller removes out-of-range indexes first); a stopped
  worker gives its item back without using an attempt (SIGTERM, exit 143, ignored by the Job's
  pod failure policy), and an index restarted later waits out the Job controller's per-index
  backoff (10 s after one such stop);
- ``status.workers`` = ``{desired, current}`` and the gauges ``queuejob_workers_desired`` /
  ``queuejob_workers_current`` are written for every QueueJob (desired = spec.parallelism
  without autoscaling; current = the Job's active pods).
"""

from __future__ import annotations

from typing import Any

import kopf

from queuejob import jobs, jobstatus, kube, naming, wording
from queuejob.autoscaler import Decision
from queuejob.jobcache import JobCache
from queuejob.limits import guarded
from queuejob.runtime import Runtime
from queuejob.spec import Autoscaling, QueueJobSpec
from queuejob.statuswriter import FINISHED, StatusWriter


def job_parallelism(job: dict[str, Any] | None, default: int) -> int:
    """The Job's ``spec.parallelism`` (``default`` when there is no Job)."""
    value = ((job or {}).get("spec") or {}).get("parallelism")
    return default if value is None else int(value)


def condition_message(policy: Autoscaling, desired: int, spec_parallelism: int) -> str:
    """The Autoscaling condition's message (changes only when ``desired`` or the spec does)."""
    return (
        f"{wording.count(desired, 'worker')} from queue depth: one per "
        f"{policy.items_per_worker} pending or leased "
        f"{wording.noun(policy.items_per_worker, 'item')}, "
        f"within {policy.min_parallelism}..{policy.max_parallelism}, scaling down after"
        f" {policy.scale_down_stabilization_seconds}s; spec.parallelism ({spec_parallelism}) "
        "is overridden while spec.autoscaling is set"
    )


async def sync_workers(
    writer: StatusWriter,
    qspec: QueueJobSpec,
    job: dict[str, Any] | None,
    *,
    work: int,
    scale: bool,
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    runtime: Runtime,
    logger: kopf.Logger,
) -> float | None:
    """Write status.workers and the worker gauges; with ``scale`` and ``spec.autoscaling``,
    decide the worker count for ``work`` (pending + leased) items and patch the Job to it.

    Returns the seconds until a held scale-down falls due (for the refresh pacer), else None.
    """
    current = jobstatus.active_workers(job)
    policy = qspec.autoscaling
    have = job_parallelism(job, qspec.parallelism)
    scale_down_in: float | None = None
    if policy is None:
        runtime.stabilizer.forget(uid)
        desired = qspec.parallelism
    elif not scale or job is None:
        if not scale:
            runtime.stabilizer.forget(uid)  # finished or suspended: start afresh when resumed
        desired = have
    else:
        decision = runtime.stabilizer.decide(uid, policy, work, have)
        desired = decision.desired
        scale_down_in = decision.scale_down_in
        if desired != have:
            await _scale(runtime.jobs, decision, work, body, namespace, name, logger)
        writer.condition(
            "Autoscaling", True, "QueueDepth", condition_message(policy, desired, qspec.parallelism)
        )
    writer.set("workers", {"desired": desired, "current": current})
    runtime.metrics.observe_workers(f"{namespace}/{name}", desired=desired, current=current)
    return scale_down_in


async def _scale(
    cache: JobCache,
    decision: Decision,
    work: int,
    body: kopf.Body,
    namespace: str,
    name: str,
    logger: kopf.Logger,
) -> None:
    """Patch the Job to ``decision.desired`` workers, with an Event.

    The fields to patch (``completions`` with ``parallelism``) and the Event's "from" come from
    the Job read fresh, not from the cached Job the decision saw: a cache lagging behind the
    last scale would patch the wrong fields or report a change that is none.
    """
    job_name = naming.job_name(name)
    job = await cache.read(namespace, job_name, fresh=True)
    if job is None:
        return  # the Job is gone; the next refresh re-creates it
    have = job_parallelism(job, decision.desired)
    if have == decision.desired:
        return
    fields = jobs.scale_fields(job, decision.desired)
    if fields:
        patched = await kube.patch_job(namespace, job_name, {"spec": fields})
        if patched is None:
            return  # the Job is gone; the next refresh re-creates it
        cache.keep(patched)
    up = decision.desired > have
    message = (
        f"Job {job_name} parallelism {have} -> {decision.desired}: "
        f"{wording.count(work, 'item')} pending or leased (recommended {decision.recommended})"
    )
    logger.info(message)
    kopf.event(body, type="Normal", reason="ScaledUp" if up else "ScaledDown", message=message)


def parallelism_overridden(body: kopf.Body, parallelism: Any, logger: kopf.Logger) -> None:
    """Report a spec.parallelism change (e.g. ``kubectl scale``) that autoscaling overrides."""
    message = (
        f"spec.parallelism {parallelism} is not applied: spec.autoscaling sets the Job's "
        "parallelism from queue depth; remove spec.autoscaling to scale by hand"
    )
    logger.warning(message)
    kopf.event(body, type="Warning", reason="ParallelismOverridden", message=message)


@kopf.on.field(
    naming.GROUP,
    naming.VERSION,
    naming.PLURAL,
    field="spec.autoscaling",
    id="autoscaling-removed",
    old=kopf.PRESENT,
    new=kopf.ABSENT,
)
@guarded("autoscaling-removed")
async def autoscaling_removed(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    namespace: str,
    name: str,
    uid: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """spec.autoscaling was removed: the Job goes back to spec.parallelism (unless finished)."""
    runtime: Runtime = memo.runtime
    runtime.stabilizer.forget(uid)
    writer = StatusWriter(body, status, patch, logger, runtime.metrics)
    if writer.phase in FINISHED:
        return
    parallelism = int(spec.get("parallelism", 1))
    job_name = naming.job_name(name)
    # A fresh read, not the cache: the fields to patch depend on the Job's current spec.
    job = await runtime.jobs.read(namespace, job_name, fresh=True)
    fields = jobs.scale_fields(job, parallelism)
    if job is not None and fields:
        patched = await kube.patch_job(namespace, job_name, {"spec": fields})
        runtime.jobs.keep(patched)
        if patched is not None:
            logger.info(f"Job {job_name}: autoscaling removed, parallelism -> {parallelism}")
    writer.condition(
        "Autoscaling",
        False,
        "Disabled",
        f"spec.autoscaling was removed; spec.parallelism ({parallelism}) applies",
    )
    writer.set("observedGeneration", meta.get("generation"))
