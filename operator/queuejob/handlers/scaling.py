"""On a change to spec.parallelism or spec.suspend: patch the Job (and the phase for suspend).

parallelism: the Job's ``parallelism`` and, for an Indexed Job, ``completions`` with it; not
while ``spec.autoscaling`` is set (it wins, see ``handlers.autoscale``): then a Warning Event.

Both are field handlers: kopf calls them with the last handled (``old``) and the current
(``new``) value, so a burst of updates converges to the latest spec. On creation (``old`` is
None) they are filtered out before they take a slot: the create handler builds the Job.
"""

from __future__ import annotations

from typing import Any

import kopf

from queuejob import jobs, kube, naming
from queuejob.handlers import autoscale
from queuejob.limits import guarded
from queuejob.runtime import Runtime
from queuejob.statuswriter import FINISHED, StatusWriter


def _on_existing(field: str, handler_id: str) -> kopf.on.ChangingDecorator:
    """A kopf field handler of ``field`` that runs only when an old value exists (not on create)."""
    return kopf.on.field(
        naming.GROUP, naming.VERSION, naming.PLURAL, field=field, id=handler_id, old=kopf.PRESENT
    )


@_on_existing("spec.parallelism", "parallelism")
@guarded("parallelism")
async def parallelism_changed(
    old: Any,
    new: Any,
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    patch: kopf.Patch,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Set the Job's parallelism (and, Indexed, its completions) to the spec's, unless
    ``spec.autoscaling`` owns it.

    See :func:`queuejob.jobs.scale_fields`: for 0 only ``parallelism``, so the Job keeps its
    ``completions`` and does not complete; scaling up sets both again.
    """
    if old is None or new is None:
        return
    if spec.get("autoscaling") is not None:
        autoscale.parallelism_overridden(body, new, logger)
        patch.status["observedGeneration"] = meta.get("generation")
        return
    runtime: Runtime = memo.runtime
    job_name = naming.job_name(name)
    # A fresh read, not the cache: the fields to patch depend on the Job's current spec.
    job = await runtime.jobs.read(namespace, job_name, fresh=True)
    fields = jobs.scale_fields(job, int(new))
    if job is not None and fields:
        patched = await kube.patch_job(namespace, job_name, {"spec": fields})
        runtime.jobs.keep(patched)
        if patched is not None:
            logger.info(f"Job {job_name}: parallelism {old} -> {new} ({fields})")
    patch.status["observedGeneration"] = meta.get("generation")


@_on_existing("spec.suspend", "suspend")
@guarded("suspend")
async def suspend_changed(
    old: Any,
    new: Any,
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    namespace: str,
    name: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Suspend or resume the Job; the phase follows unless the QueueJob already finished."""
    if old is None:
        return
    runtime: Runtime = memo.runtime
    writer = StatusWriter(body, status, patch, logger, runtime.metrics)
    suspend = bool(new)
    job_name = naming.job_name(name)
    if writer.phase in FINISHED:
        return
    writer.set("observedGeneration", meta.get("generation"))
    patched = await kube.patch_job(namespace, job_name, {"spec": {"suspend": suspend}})
    if patched is None:
        return  # no Job yet: the create handler will use the current spec
    runtime.jobs.keep(patched)
    if suspend:
        writer.suspended(f"Job {job_name} suspended")
    else:
        writer.condition("Suspended", False, "SpecResumed", "spec.suspend is false")
        writer.condition("Running", True, "Resumed", f"Job {job_name} resumed")
        writer.phase_to("Running", "Resumed", f"Job {job_name} resumed")
