"""Operating a live QueueJob through the Kubernetes API: redrive dead letters, add items.

A user (or ``kubectl queuejob``) asks by patching the annotation :data:`REQUEST_ANNOTATION` on
the QueueJob with a JSON request; the operator carries it out on the queue in its refresh
(``handlers.refresh``, one request per QueueJob at a time, serialized with the status refresh)
and reports the outcome in ``status.lastRequest`` and an Event. So the Kubernetes RBAC on the
QueueJob authorizes changes of its queue (``patch queuejobs``, plus ``create configmaps`` for
the items to add); nobody needs access to Redis. Requests::

    {"id": "<unique>", "action": "redrive", "items": ["a", "b"]}   # those dead letters
    {"id": "<unique>", "action": "redrive", "all": true}           # every dead letter
    {"id": "<unique>", "action": "add", "configMap": "<name>"}     # the lines of its key "items"

Guarantees:

- **At most once per id.** A request runs when its ``id`` differs from ``status.lastRequest.id``
  and is recorded there (in the same status patch as its effects on the phase); the queue
  operations are idempotent (an item is added at most once ever; a redriven item is no dead
  letter any more), so a run repeated after a lost status patch changes nothing twice.
- **Bad requests are reported, not retried:** ``status.lastRequest.result: Failed`` with the
  reason in ``message`` and a Warning Event ``RequestFailed``.
- **A finished QueueJob comes back.** When a request leaves work in the queue of a Succeeded or
  Failed QueueJob, it returns to phase Running (conditions Complete/Failed turn False, reason
  Reopened) and its finished worker Job is deleted and created again
  (:func:`restart_workers`, Event ``WorkersRestarted``). The refresh also restarts a Complete
  Job whenever the queue has work again (items added while the last worker was exiting).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import kopf

from queuejob import jobstatus, kube, naming, wording
from queuejob.conditions import now
from queuejob.provision import ensure_workers
from queuejob.queues import RedisTarget
from queuejob.settings import OperatorSettings
from queuejob.spec import QueueJobSpec, SpecError, parse_lines
from queuejob.statuswriter import StatusWriter
from workqueue.errors import ItemError, QueueError
from workqueue.models import LeaseInfo
from workqueue.redisqueue import LeaseQueue

#: The annotation holding a request (JSON, see the module doc).
REQUEST_ANNOTATION = f"{naming.GROUP}/request"
#: Key of the ConfigMap of an ``add`` request that holds the items, one per line.
ADD_ITEMS_KEY = "items"
ACTIONS = ("redrive", "add")
#: Most items one redrive request may list (larger redrives: ``all``).
MAX_REDRIVE_ITEMS = 1000
MAX_ID_CHARS = 64
#: Leases published in ``status.leases`` (of ``status.counts.leased``).
LEASES_SHOWN = 20
#: Job conditions after which the Job starts no more pods.
_FINISHED_JOB = ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")
#: How long :func:`restart_workers` waits for the old Job to be gone.
JOB_GONE_SECONDS = 30.0


class RequestError(Exception):
    """A request that cannot be carried out; the message says why."""


@dataclasses.dataclass(frozen=True)
class Request:
    """A parsed request (see the module doc)."""

    id: str
    action: str
    items: tuple[str, ...] | None = None
    all: bool = False
    config_map: str | None = None


def request_id(raw: str) -> str:
    """The request's ``id``, or a digest of the text for a request without a usable one (so a
    malformed annotation is reported once, not on every refresh)."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return str(value["id"])[:MAX_ID_CHARS]
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def pending_request(meta: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    """The annotation's text if it holds a request not carried out yet, else None."""
    raw = (meta.get("annotations") or {}).get(REQUEST_ANNOTATION)
    if not raw:
        return None
    last = status.get("lastRequest") or {}
    return None if last.get("id") == request_id(raw) else str(raw)


def parse_request(raw: str) -> Request:
    """The request in the annotation's text; :class:`RequestError` naming the bad field."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise RequestError(f"annotation {REQUEST_ANNOTATION} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RequestError(f"annotation {REQUEST_ANNOTATION} must be a JSON object")
    rid = value.get("id")
    if not isinstance(rid, str) or not 1 <= len(rid) <= MAX_ID_CHARS:
        raise RequestError(f"request.id must be a string of 1..{MAX_ID_CHARS} characters")
    action = value.get("action")
    if action not in ACTIONS:
        raise RequestError(f"request.action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if action == "add":
        cm = value.get("configMap")
        if not isinstance(cm, str) or not cm:
            raise RequestError("request.configMap (the ConfigMap with the items) is required")
        return Request(rid, action, config_map=cm)
    items = value.get("items")
    if value.get("all") is True:
        if items:
            raise RequestError("request.items and request.all are exclusive")
        return Request(rid, action, all=True)
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise RequestError("request.items must be a non-empty list of strings (or all: true)")
    if len(items) > MAX_REDRIVE_ITEMS:
        raise RequestError(
            f"request.items lists {wording.count(len(items), 'item')}, at most {MAX_REDRIVE_ITEMS}"
        )
    return Request(rid, action, items=tuple(items))


async def carry_out(
    raw: str,
    queue: LeaseQueue,
    namespace: str,
) -> tuple[Request | None, str, str | None]:
    """Run the request on ``queue``: (request or None, message, error or None)."""
    try:
        request = parse_request(raw)
    except RequestError as exc:
        return None, str(exc), str(exc)
    try:
        if request.action == "redrive":
            result = await asyncio.to_thread(queue.redrive, None if request.all else request.items)
            message = f"{_n(result.redriven, 'dead letter')} back to pending"
            if result.skipped:
                shown = list(result.skipped.items())[:5]
                message += "; not dead letters: " + ", ".join(f"{i} ({s})" for i, s in shown)
                if len(result.skipped) > 5:
                    message += f" and {len(result.skipped) - 5} more"
            if result.dead_left:
                message += f"; {_n(result.dead_left, 'dead letter')} left"
            return request, message, None
        assert request.config_map is not None
        field = f"request.configMap {request.config_map}"
        try:
            text = await kube.read_configmap_key(namespace, request.config_map, ADD_ITEMS_KEY)
        except kube.NotFoundError as exc:
            raise RequestError(f"{field}: {exc}") from None
        try:
            items, _ = parse_lines(text, f"{field} (key {ADD_ITEMS_KEY})")
        except SpecError as exc:
            raise RequestError(str(exc)) from None
        added = await asyncio.to_thread(queue.add, items)
        message = f"{_n(added.added, 'item')} added"
        if added.present:
            message += f"; {added.present} already in the queue (not added again)"
        return request, message, None
    except (RequestError, ItemError) as exc:
        return request, str(exc), str(exc)
    except QueueError as exc:
        # Redis trouble: not the request's fault; the refresh fails and retries it.
        raise kopf.TemporaryError(f"request {request.id}: {exc}", delay=5) from exc


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def record(
    writer: StatusWriter,
    body: kopf.Body,
    raw: str,
    request: Request | None,
    message: str,
    error: str | None,
) -> None:
    """Write ``status.lastRequest`` and post the Event of a carried-out request."""
    action = request.action if request is not None else "unknown"
    writer.set(
        "lastRequest",
        {
            "id": request_id(raw),
            "action": action,
            "result": "Failed" if error else "Succeeded",
            "message": message[:1024],
            "time": now(),
        },
    )
    if error:
        kopf.event(body, type="Warning", reason="RequestFailed", message=f"{action}: {message}")
    else:
        reason = "Redriven" if action == "redrive" else "ItemsAdded"
        kopf.event(body, type="Normal", reason=reason, message=message)


def refuse(writer: StatusWriter, body: kopf.Body, raw: str, message: str) -> None:
    """Record the request in ``raw`` as Failed with ``message`` without running it."""
    try:
        request: Request | None = parse_request(raw)
    except RequestError:
        request = None
    record(writer, body, raw, request, message, message)


def reopen(writer: StatusWriter, message: str) -> None:
    """A finished QueueJob has work again: back to Running, reason Reopened (one phase-change
    Event; the request's own Event says what was done)."""
    for type_ in ("Complete", "Failed"):
        if writer.get_condition(type_) is not None:
            writer.condition(type_, False, "Reopened", message)
    writer.set("completionTime", None)
    writer.condition("Running", True, "Reopened", message)
    writer.phase_to("Running", "Reopened", message)


def job_finished(job: Mapping[str, Any] | None) -> bool:
    """True if the Job exists but starts no more workers (finished or being deleted)."""
    if job is None:
        return False
    deleting = bool((job.get("metadata") or {}).get("deletionTimestamp"))
    return deleting or jobstatus.true_condition(job, *_FINISHED_JOB) is not None


def restart_due(job: Mapping[str, Any] | None, queue_done: bool, reopened: bool) -> bool:
    """True if the finished ``job`` must be re-created: the queue has work, and the Job
    completed (its workers exited, having seen the queue done before items arrived) or a
    request just reopened the QueueJob (a Job that failed for good restarts only then)."""
    if job is None or queue_done or not job_finished(job):
        return False
    return reopened or jobstatus.true_condition(job, "Failed", "FailureTarget") is None


async def restart_workers(
    body: kopf.Body,
    qspec: QueueJobSpec,
    job: Mapping[str, Any],
    *,
    queue: str,
    target: RedisTarget,
    settings: OperatorSettings,
    logger: kopf.Logger,
    work: int = 0,
    why: str = "the queue has work again",
) -> dict[str, Any] | None:
    """Delete the worker Job ``job`` and create it again (same name, fresh indexes).

    ``work`` (pending + leased items) sizes the new Job under ``spec.autoscaling``; ``why``
    ends the Event's message. A running Job's pods are deleted with it: each worker gets
    SIGTERM, gives its item back and exits 143, which the Job's podFailurePolicy ignores.

    Returns the new Job, or None if the old one was still being deleted after
    :data:`JOB_GONE_SECONDS` (the next refresh tries again). Idempotent: the deletion has a
    uid precondition, so a Job already re-created is never deleted.
    """
    meta = body["metadata"]
    namespace, job_name = meta["namespace"], naming.job_name(meta["name"])
    old_uid = str((job.get("metadata") or {}).get("uid", ""))
    await kube.delete_job(namespace, job_name, old_uid)
    deadline = time.monotonic() + JOB_GONE_SECONDS
    while True:
        current = await kube.read_job(namespace, job_name)
        if current is None or current["metadata"].get("uid") != old_uid:
            break
        if time.monotonic() > deadline:
            logger.info(f"Job {job_name} is still being deleted; re-creating it later")
            return None
        await asyncio.sleep(0.5)
    new = await ensure_workers(
        body, qspec, queue=queue, target=target, settings=settings, work=work
    )
    message = f"Job {job_name} re-created: {why}"
    logger.info(message)
    kopf.event(body, type="Normal", reason="WorkersRestarted", message=message)
    return new


def lease_rows(leases: list[LeaseInfo]) -> list[dict[str, Any]]:
    """``status.leases``: the oldest :data:`LEASES_SHOWN` leases (item, worker, attempt, since)."""
    known = sorted(leases, key=lambda info: info.leased_at or 0.0)[:LEASES_SHOWN]
    rows = []
    for info in known:
        row: dict[str, Any] = {
            "item": info.item[:256],
            "worker": info.worker_id[:253],
            "attempt": info.attempt,
        }
        if info.leased_at is not None:
            stamp = datetime.datetime.fromtimestamp(int(info.leased_at), datetime.UTC)
            row["since"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(row)
    return rows
