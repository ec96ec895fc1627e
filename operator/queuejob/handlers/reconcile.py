"""On create or resume: seed the queue idempotently, then create the Job.

Seeding adds only items never seeded before (the queue remembers every item), so a retried or
resumed handler never duplicates work; an index range resumes at its cursor, and a long seed
shows its progress in the condition Seeded (False, reason Seeding) while it runs
(``queuejob.seeding``). The Job is created after the queue is complete, so
workers never see a partial queue and exit early. A finished QueueJob is left alone on resume
(one failed for a missing ConfigMap or Secret is picked up by ``handlers.recheck`` instead),
except that a Secret of an older operator holding the operator's Redis password gets the
QueueJob's own user instead. On resume, a running Job whose workers do not log in as the
QueueJob's own Redis user (an older operator's) is re-created (:func:`move_workers`).
A new QueueJob goes to phase Running (or Suspended) directly, with one Event; only if the
handler fails before does it record phase Pending (with its Event) before the failure.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf

from queuejob import credentials, jobs, kube, naming, operate, queues, seeding, wording
from queuejob.conditions import now
from queuejob.errors import ConfigError
from queuejob.limits import guarded
from queuejob.provision import ensure_job, ensure_secret
from queuejob.runtime import Runtime
from queuejob.spec import QueueJobSpec, SpecError, parse
from queuejob.statuswriter import FINISHED, StatusWriter


@kopf.on.resume(naming.GROUP, naming.VERSION, naming.PLURAL, id="reconcile")
@kopf.on.create(naming.GROUP, naming.VERSION, naming.PLURAL, id="reconcile")
@guarded("reconcile")
async def reconcile(
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
    """Seed the queue and create the worker Job (see the module doc)."""
    runtime: Runtime = memo.runtime
    writer = StatusWriter(body, status, patch, logger, runtime.metrics)
    if writer.phase in FINISHED:
        logger.info(f"Already {writer.phase}; nothing to resume")
        await scrub_old_secret(body, spec, status, namespace, name, uid, runtime, logger)
        return
    try:
        try:
            qspec = parse(spec)
        except SpecError as exc:
            raise ConfigError("InvalidSpec", str(exc)) from None

        items = await queues.load_items(qspec, namespace)
        target = await queues.resolve_target(qspec, namespace, runtime.settings)
        await start_queue(
            writer,
            qspec,
            items,
            target,
            body=body,
            meta=meta,
            namespace=namespace,
            name=name,
            uid=uid,
            runtime=runtime,
            logger=logger,
        )
    except Exception:
        # A new QueueJob that did not make it to Running shows (and announces) phase Pending.
        # One that did goes None -> Running in one status patch: a Pending Event then would
        # announce a phase nobody could ever read (one API request per QueueJob saved).
        if writer.phase is None:
            writer.phase_to("Pending", "Created", "seeding the queue")
        raise


async def scrub_old_secret(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str,
    name: str,
    uid: str,
    runtime: Runtime,
    logger: kopf.Logger,
) -> None:
    """A finished QueueJob of an older operator still has the operator's password in its Secret
    (no ``username`` in it): give it its own user instead (a redrive may start workers again)."""
    try:
        qspec = parse(spec)
        target = await queues.resolve_target(qspec, namespace, runtime.settings)
    except (SpecError, ConfigError):
        return
    if not target.shared:
        return
    data = await kube.read_secret(namespace, naming.secret_name(name))
    if data is None or data.get(jobs.USERNAME_KEY):
        return
    queue_name = status.get("queue") or naming.queue_name(namespace, name, uid)
    await credentials.ensure(body, target, queue_name, runtime.settings)
    logger.info(f"Secret {naming.secret_name(name)}: the operator's password replaced by a user")


async def move_workers(
    body: kopf.Body,
    qspec: QueueJobSpec,
    rewritten: bool,
    *,
    queue: str,
    target: queues.RedisTarget,
    runtime: Runtime,
    logger: kopf.Logger,
    work: int,
) -> None:
    """Re-create a running worker Job whose workers do not log in as the QueueJob's ACL user
    (made by an older operator) or whose Secret was just replaced (``rewritten``).

    Its pods are deleted with it (SIGTERM: each gives its item back, exit 143 is ignored by the
    Job); the new Job's pods read the new Secret. Raises kopf's TemporaryError while the old
    Job is still being deleted, so the handler runs again.
    """
    meta = body["metadata"]
    # A fresh read, not the cache: this decides whether to delete and re-create the Job.
    job = await runtime.jobs.read(meta["namespace"], naming.job_name(meta["name"]), fresh=True)
    if job is None or (not rewritten and credentials.job_is_current(job, target)):
        return
    why = "its workers move to the QueueJob's own Redis user"
    logger.info(f"Re-creating Job {job['metadata']['name']}: {why}")
    new = await operate.restart_workers(
        body, qspec, job, queue=queue, target=target, settings=runtime.settings,
        logger=logger, work=work, why=why,
    )  # fmt: skip
    if new is None:
        raise kopf.TemporaryError("waiting for the old worker Job to be deleted", delay=5)
    runtime.jobs.keep(new)


async def start_queue(
    writer: StatusWriter,
    qspec: QueueJobSpec,
    items: queues.Items,
    target: queues.RedisTarget,
    *,
    body: kopf.Body,
    meta: kopf.Meta,
    namespace: str,
    name: str,
    uid: str,
    runtime: Runtime,
    logger: kopf.Logger,
) -> None:
    """Seed ``items`` idempotently, ensure the Job, then record phase Running (or Suspended).

    A ``ConfigError`` condition present (the re-check found its cause gone) turns False with
    reason Resolved, with a Normal Event; a Failed QueueJob goes back through Pending. Those
    status changes are written only after the Job exists, so a failure in between leaves the
    QueueJob as it was (still matched by the re-check; seeding and Job creation are idempotent).
    """
    queue_name = naming.queue_name(namespace, name, uid)
    queue = queues.open_queue(target, queue_name, runtime.settings)

    async def report(done: int, count: int) -> None:
        # A long seed: show its progress now (kopf writes the patch only after the handler).
        writer.condition(
            "Seeded",
            False,
            "Seeding",
            f"{done} of {wording.count(count, 'item')} in queue {queue_name} so far; "
            "seeding goes on (and resumes there after an operator restart)",
        )
        await kube.patch_queuejob_status(namespace, name, {"conditions": writer.get("conditions")})

    # The queue and the Secret do not depend on each other: one round trip instead of two.
    # Both finish (or fail) before going on; the Job comes after both (workers must never see
    # a partial queue or miss the Secret).
    seeded, secret = await asyncio.gather(
        seeding.seed(queue, queues.queue_config(qspec), items, report, logger=logger),
        ensure_secret(body, target, queue_name, runtime.settings),
        return_exceptions=True,
    )
    for outcome in (seeded, secret):
        if isinstance(outcome, BaseException):
            raise outcome
    rewritten = cast(credentials.Ensured, secret).rewritten
    if rewritten or writer.get("jobName"):  # a Job may exist (a new QueueJob has none)
        await move_workers(
            body, qspec, rewritten, queue=queue_name, target=target, runtime=runtime,
            logger=logger, work=items.count,
        )  # fmt: skip
    added = int(cast(int, seeded))
    logger.info(f"Queue {queue_name}: {added} of {wording.count(items.count, 'item')} added")
    message = f"{wording.count(items.count, 'item')} in queue {queue_name}"
    if items.range is not None:
        message += f" (the indices {items.range.start}..{items.range.stop - 1})"
    if items.duplicates:
        message += f"; {items.duplicates} duplicate lines ignored"
        kopf.event(
            body,
            type="Warning",
            reason="DuplicateItems",
            message=f"{items.duplicates} duplicate item lines in spec.itemsFrom were ignored",
        )
    writer.set("queue", queue_name)
    writer.condition("Seeded", True, "ItemsSeeded", message)

    job = await ensure_job(
        body, qspec, queue=queue_name, target=target, settings=runtime.settings, work=items.count
    )
    runtime.jobs.keep(job)
    if writer.has_condition("ConfigError"):
        resolved = f"configuration is valid again; {message}"
        writer.condition("ConfigError", False, "Resolved", resolved)
        logger.info(f"ConfigError resolved: {resolved}")
        kopf.event(body, type="Normal", reason="ConfigResolved", message=resolved)
        if writer.phase == "Failed":
            writer.phase_to("Pending", "ConfigResolved", "configuration error resolved")
    writer.set("jobName", job["metadata"]["name"])
    if not writer.get("startTime"):
        writer.set("startTime", now())
    writer.set("observedGeneration", meta.get("generation"))
    writer.set("progress", writer.get("progress") or f"0/{items.count}")
    if qspec.suspend:
        writer.suspended("spec.suspend is true; no worker pods run")
    else:
        writer.condition(
            "Running",
            True,
            "JobCreated",
            f"Job {job['metadata']['name']} runs "
            f"{wording.count(int(job['spec'].get('parallelism') or 0), 'worker')}",
        )
        writer.phase_to("Running", "JobCreated", f"Job {job['metadata']['name']} created")
