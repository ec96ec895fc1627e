"""Refresh a QueueJob: reap expired leases, refresh the status, finish, expire the Redis keys.

A refresh runs when something changed (``queuejob.handlers.events``: a queue notification from
Redis, a watch event of the QueueJob or of its Job, the queue's earliest lease expiry or retry,
a TTL or autoscaler deadline) and, as a safety net for lost notifications, every
``QUEUEJOB_STATUS_INTERVAL`` seconds per QueueJob (the resync, queued by the refresher after
each refresh; skipped until the queue is seeded; an idle QueueJob backs off up to
``QUEUEJOB_STATUS_IDLE_INTERVAL``, and all resyncs together start at most
``QUEUEJOB_RESYNC_RATE`` per second, see ``queuejob.pacing``; a finished one with no worker
left and no TTL removal pending has none). Each refresh:

- reap leases whose holder died (the item goes back to pending, counted as a retry);
- counts, progress, dead letters, active workers, queue metrics;
- once nothing is pending, delayed or leased: phase Succeeded (condition Complete) or, with at
  least one dead letter, Failed (condition Failed, reason ItemsDeadLettered);
- a Job that failed for good fails the QueueJob (reason WorkersFailed): with the operator's
  Indexed worker Job that is a worker slot (index) whose counted failures exceeded
  ``backoffLimitPerIndex`` (Job reason ``MaxFailedIndexesExceeded``, ``maxFailedIndexes: 0``);
  a NonIndexed Job of an older operator fails on ``backoffLimit`` (``BackoffLimitExceeded``);
- a Job deleted by hand is re-created (with the same name) while the queue is unfinished;
- on the operator's Redis, the QueueJob's ACL user is re-applied on the nodes that lack it (a
  node restarted without an ACL file); a Secret deleted or replaced gets new credentials, and a
  Job whose workers do not log in as that user (made by an older operator) is re-created
  (``queuejob.credentials``);
- a request in the annotation ``workqueue.example.com/request`` (redrive, add; see
  ``queuejob.operate``) is carried out first, once; a finished QueueJob whose queue has work
  again goes back to Running, and a finished Job is re-created while the queue has work;
- ``status.leases``: the oldest leases (item, worker, attempt, since), bounded;
- after finishing, ``activeWorkers`` follows the Job down to zero;
- ``status.workers`` (desired, current) and, with ``spec.autoscaling``, the Job's parallelism
  from pending + leased items while Running (``queuejob.handlers.autoscale``);
- ``ttlSecondsAfterFinished`` after completion, the queue's Redis keys are deleted once and the
  condition Seeded turns False with reason QueueRemoved.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections.abc import Mapping
from typing import Any

import kopf

from queuejob import conditions, credentials, jobstatus, kube, naming, operate, queues, wording
from queuejob.conditions import now
from queuejob.handlers import autoscale
from queuejob.limits import guarded
from queuejob.provision import ensure_secret, ensure_workers
from queuejob.runtime import Runtime
from queuejob.spec import QueueJobSpec, SpecError, parse
from queuejob.statuswriter import FINISHED, StatusWriter
from workqueue.durations import DurationHistogram

DEAD_LETTERS_SHOWN = 10


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def queue_removed(seeded: Mapping[str, Any] | None) -> bool:
    """True if the Seeded condition says the queue's keys were removed after the TTL."""
    return seeded is not None and seeded.get("reason") == "QueueRemoved"


@dataclasses.dataclass(frozen=True)
class Watch:
    """Where the queue of a refreshed QueueJob lives, to subscribe to its notifications."""

    url: str
    password: str | None
    queue: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one refresh found, for the pacer and the event-driven refresher: ``idle`` if there
    was nothing to do; ``next_in`` seconds until something is due by the clock (a TTL removal,
    an autoscaler scale-down), if any; ``timer_in`` seconds until the queue's earliest lease
    expires or retry falls due (it changes the queue without any notification), if any;
    ``watch`` the queue to subscribe to."""

    idle: bool
    next_in: float | None = None
    timer_in: float | None = None
    watch: Watch | None = None


async def _expire(
    writer: StatusWriter,
    qspec: QueueJobSpec,
    runtime: Runtime,
    body: kopf.Body,
    namespace: str,
    name: str,
    logger: kopf.Logger,
) -> float | None:
    """Delete the queue's keys once ttlSecondsAfterFinished has passed since completion.

    Returns the seconds until that removal falls due, or None if none is pending any more.
    """
    ttl = qspec.ttl_seconds_after_finished
    completed = writer.get("completionTime")
    if ttl is None or not completed:
        return None
    if queue_removed(writer.get_condition("Seeded")):
        return None
    age = (datetime.datetime.now(datetime.UTC) - _parse_time(completed)).total_seconds()
    if age < ttl:
        return ttl - age
    removed = await queues.delete_queue(qspec, namespace, writer.get("queue"), runtime.settings)
    runtime.metrics.forget_queue(f"{namespace}/{name}")
    message = f"{removed} Redis keys removed {ttl}s after completion (ttlSecondsAfterFinished)"
    logger.info(message)
    writer.condition("Seeded", False, "QueueRemoved", message)
    kopf.event(body, type="Normal", reason="QueueRemoved", message=message)
    return None


def job_failure(job: dict[str, Any] | None) -> str | None:
    """The reason and message of the Job's Failed=True condition, or None.

    Any reason counts (``MaxFailedIndexesExceeded``, ``FailedIndexes``, ``BackoffLimitExceeded``,
    ...): a Failed Job starts no more workers. The failed indexes, if any, are named.
    """
    c = jobstatus.true_condition(job, "Failed")
    if c is None:
        return None
    text = f"{c.get('reason', 'Failed')}: {c.get('message', '')}".strip()
    failed_indexes = jobstatus.failed_indexes(job)
    return f"{text} (failed indexes: {failed_indexes})" if failed_indexes else text


async def _carry_out_request(
    writer: StatusWriter,
    qspec: QueueJobSpec,
    runtime: Runtime,
    body: kopf.Body,
    namespace: str,
    logger: kopf.Logger,
) -> bool:
    """Carry out a pending request (``queuejob.operate``); True if it reopened a finished
    QueueJob (its queue has work again)."""
    raw = operate.pending_request(body.get("metadata", {}), body.get("status", {}))
    if raw is None:
        return False
    if queue_removed(writer.get_condition("Seeded")):
        message = "the queue was removed after ttlSecondsAfterFinished; nothing to operate on"
        operate.refuse(writer, body, raw, message)
        return False
    target = await queues.resolve_target(qspec, namespace, runtime.settings)
    queue = queues.open_queue(target, writer.get("queue"), runtime.settings)
    request, message, error = await operate.carry_out(raw, queue, namespace)
    logger.info(f"Request {operate.request_id(raw)}: {error or message}")
    operate.record(writer, body, raw, request, message, error)
    reopened = writer.phase in FINISHED and not (await asyncio.to_thread(queue.stats)).done
    if reopened:
        operate.reopen(writer, f"the queue has work again: {message}")
    await _record_now(writer, runtime, body, namespace)
    return reopened


async def _record_now(
    writer: StatusWriter, runtime: Runtime, body: kopf.Body, namespace: str
) -> None:
    """Write the status so far (the request's record, a reopening) before the QueueJob's lock
    is released. kopf and the refresher patch only after the handler returns, outside the lock:
    a refresh waiting for it would still see the request pending and run it a second time (and
    restart the new worker Job). The later patch sends the same fields again."""
    meta = body.get("metadata", {})
    latest = await kube.patch_queuejob(
        namespace, str(meta.get("name")), {"status": dict(writer.status_patch)}, status=True
    )
    if runtime.refresher is not None:
        runtime.refresher.keep(str(meta.get("uid", "")), latest)


def _restart_reason(
    job: Mapping[str, Any] | None,
    queue_done: bool,
    reopened: bool,
    rewritten: bool,
    target: queues.RedisTarget,
) -> str | None:
    """Why the existing ``job`` must be re-created (the Event's wording), or None."""
    if job is None:
        return None
    if not queue_done and (rewritten or not credentials.job_is_current(job, target)):
        return "its workers move to the QueueJob's own Redis user"
    if operate.restart_due(job, queue_done, reopened):
        return "the queue has work again"
    return None


def needs_refresh(
    spec: kopf.Spec, status: kopf.Status, meta: Mapping[str, Any] | None = None, **_: Any
) -> bool:
    """kopf ``when`` filter: skip timer runs that would do nothing, before taking a slot.

    Nothing to do: not seeded yet, a configuration error, finished with no worker left and no
    pending TTL removal, or suspended with no worker left and no lease outstanding.
    """
    config_error = conditions.is_true(status.get("conditions"), "ConfigError")
    if meta is not None and operate.pending_request(meta, status) is not None:
        return bool(status.get("queue")) or config_error  # carried out, or refused
    if not status.get("queue") or config_error:
        return False
    phase = status.get("phase")
    if phase in FINISHED:
        removed = queue_removed(conditions.get_condition(status.get("conditions"), "Seeded"))
        ttl_pending = spec.get("ttlSecondsAfterFinished") is not None and not removed
        return ttl_pending or bool(status.get("activeWorkers"))
    if phase == "Suspended" and spec.get("suspend"):
        counts = status.get("counts") or {}
        return bool(counts.get("leased") or status.get("activeWorkers"))
    return True


@guarded("refresh", kind="timer")
async def refresh(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    namespace: str,
    name: str,
    uid: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> Outcome | None:
    """Reap, count, finish and expire (see the module doc); None if not refreshed at all."""
    runtime: Runtime = memo.runtime
    newer = runtime.refresher.latest(uid, body) if runtime.refresher is not None else None
    if newer is not None:
        # Another refresh held the lock meanwhile and patched the status: start from its result.
        body, spec, status = newer, newer.spec, newer.status
    writer = StatusWriter(body, status, patch, logger, runtime.metrics)
    queue_name = writer.get("queue")
    if not queue_name or writer.has_condition("ConfigError"):
        raw = operate.pending_request(body.get("metadata", {}), status)
        if raw is not None and writer.has_condition("ConfigError"):
            operate.refuse(
                writer, body, raw, "the QueueJob has a configuration error: fix it first"
            )
            return Outcome(idle=False)
        return None
    try:
        qspec = parse(spec)
    except SpecError:
        return None  # reported by the change handlers
    job_name = naming.job_name(name)
    reopened = await _carry_out_request(writer, qspec, runtime, body, namespace, logger)
    if writer.phase in FINISHED:
        # Workers exit on their own once the queue is done; follow them down to zero. Read
        # only (sync_workers does not scale here): the cached Job will do, and its watch event
        # triggers the next refresh.
        job = await runtime.jobs.read(namespace, job_name, owner=uid)
        writer.set("activeWorkers", jobstatus.active_workers(job))
        await autoscale.sync_workers(
            writer, qspec, job, work=0, scale=False, body=body, namespace=namespace, name=name,
            uid=uid, runtime=runtime, logger=logger,
        )  # fmt: skip
        next_in = await _expire(writer, qspec, runtime, body, namespace, name, logger)
        return Outcome(idle=not patch.status, next_in=next_in)

    target = await queues.resolve_target(qspec, namespace, runtime.settings)
    queue = queues.open_queue(target, queue_name, runtime.settings)
    resynced = await credentials.resync(body, target, queue_name, runtime.settings)
    rewritten = False
    if resynced is None:  # the Secret is gone or was replaced: new credentials
        await ensure_secret(body, target, queue_name, runtime.settings)
        rewritten = True
    elif resynced:
        where = ", ".join(resynced) or "the server"
        logger.warning(
            f"The Redis user of queue {queue_name} was missing on {where} (restarted without "
            "an ACL file?); re-applied"
        )

    def read() -> tuple[int, Any, list[Any], list[Any], DurationHistogram, float | None]:
        reaped = queue.reap()
        stats = queue.stats()
        leases = queue.all_leases(10 * operate.LEASES_SHOWN) if stats.leased else []
        dead = queue.dead_letters(DEAD_LETTERS_SHOWN)
        timer = queue.next_timer() if stats.leased or stats.delayed else None
        timer_in = None if timer is None else max(0.0, timer - time.time())
        return reaped, stats, dead, leases, queue.durations(), timer_in

    reaped, stats, dead, leases, durations, timer_in = await asyncio.to_thread(read)
    if reaped:
        logger.info(
            f"Reaped {wording.count(reaped, 'expired lease')}; "
            f"{wording.noun(reaped, 'its item is', 'their items are')} pending again"
        )
    # The cached Job (or, on a miss, a GET): None only comes from the API, never from the
    # cache, so a missing Job is re-created on fresh data.
    job = await runtime.jobs.read(namespace, job_name, owner=uid)
    why = _restart_reason(job, stats.done, reopened, rewritten, target)
    if why is not None:
        # Re-creating the Job deletes it: decide on a fresh read, never on the cache alone (a
        # Job it still shows finished or outdated would be restarted for nothing).
        job = await runtime.jobs.read(namespace, job_name, fresh=True)
        why = _restart_reason(job, stats.done, reopened, rewritten, target)
    if job is None and not stats.done:
        logger.warning(f"Job {job_name} is missing; re-creating it")
        job = await ensure_workers(
            body,
            qspec,
            queue=queue_name,
            target=target,
            settings=runtime.settings,
            work=stats.pending + stats.delayed + stats.leased,
        )
        runtime.jobs.keep(job)  # seen by the next refresh before the watch shows it
    elif why is not None:
        assert job is not None
        job = await operate.restart_workers(
            body,
            qspec,
            job,
            queue=queue_name,
            target=target,
            settings=runtime.settings,
            logger=logger,
            work=stats.pending + stats.delayed + stats.leased,
            why=why,
        )
        runtime.jobs.keep(job)
    active = jobstatus.active_workers(job)
    scale_down_in = await autoscale.sync_workers(
        writer,
        qspec,
        job,
        work=stats.pending + stats.delayed + stats.leased,
        scale=not stats.done and not qspec.suspend and job_failure(job) is None,
        body=body,
        namespace=namespace,
        name=name,
        uid=uid,
        runtime=runtime,
        logger=logger,
    )

    counts = {
        "total": stats.total,
        "pending": stats.pending + stats.delayed,
        "leased": stats.leased,
        "succeeded": stats.succeeded,
        "failed": stats.dead,
        "retries": stats.retries,
    }
    writer.set("counts", counts)
    writer.set("progress", f"{stats.succeeded}/{stats.total}")
    writer.set("itemDuration", durations.summary())
    writer.set("activeWorkers", active)
    writer.set("leases", operate.lease_rows(leases))
    writer.set(
        "deadLetters",
        [{"item": d.item, "error": d.error[:1024], "attempts": d.attempts} for d in dead],
    )
    runtime.metrics.observe_queue(
        f"{namespace}/{name}",
        pending=stats.pending,
        delayed=stats.delayed,
        leased=stats.leased,
        succeeded=stats.succeeded,
        dead=stats.dead,
        total=stats.total,
        retries=stats.retries,
        durations=durations,
    )

    if stats.done and stats.total > 0:
        writer.set("completionTime", now())
        writer.condition("Running", False, "QueueDone", "every item succeeded or was dead-lettered")
        if stats.dead:
            message = (
                f"{stats.dead} of {wording.count(stats.total, 'item')} dead-lettered after retries"
            )
            writer.condition("Failed", True, "ItemsDeadLettered", message)
            writer.phase_to("Failed", "ItemsDeadLettered", message)
        else:
            message = (
                "the item succeeded"
                if stats.total == 1
                else f"all {wording.count(stats.total, 'item')} succeeded"
            )
            writer.condition("Complete", True, "AllItemsSucceeded", message)
            writer.phase_to("Succeeded", "AllItemsSucceeded", message)
    elif (failure := job_failure(job)) is not None:
        # The Job gave up (a worker slot failed too often): no worker comes back for the rest.
        message = (
            f"Job {job_name} failed with "
            f"{wording.count(stats.pending + stats.delayed + stats.leased, 'item')} "
            f"unfinished: {failure}"
        )
        writer.set("completionTime", now())
        writer.condition("Running", False, "WorkersFailed", message)
        writer.condition("Failed", True, "WorkersFailed", message)
        writer.phase_to("Failed", "WorkersFailed", message)
    elif qspec.suspend:
        writer.phase_to("Suspended", "Suspended", "spec.suspend is true")
    else:
        writer.phase_to("Running", "Running", f"{wording.count(active, 'worker')} active")
    # Idle: nothing to write, no lease to watch for expiry, and the Job is there. An idle
    # QueueJob whose autoscaler holds a scale-down is refreshed when that falls due.
    idle = not patch.status and not stats.leased and not reaped and job is not None
    return Outcome(
        idle=idle,
        next_in=scale_down_in,
        timer_in=timer_in,
        watch=Watch(target.url, target.password, queue_name),
    )
