"""Retry a QueueJob that failed because a referenced object was missing, on a slow clock.

A missing ConfigMap or Secret (or key), or a ConfigMap without valid items, is a permanent
``ConfigError`` (phase Failed, one Warning Event, no retry storm), yet the user fixes it without
touching the QueueJob: by creating or editing that object. The refresher
(``queuejob.refresher``) runs :func:`recheck_when_due` instead of a refresh for such a QueueJob
(:func:`needs_config_recheck`): every ``QUEUEJOB_CONFIG_RECHECK_INTERVAL`` seconds (the first
one interval after the failure was seen; the refresher queues the QueueJob at that time) it
reads the references again:

- still missing: a debug log line only; the ConfigError condition is rewritten only if its
  reason or message changed (e.g. the ConfigMap now exists but the Secret does not), so no
  Events and no status writes per check;
- resolved: the normal start (:func:`~queuejob.handlers.reconcile.start_queue`): seed, Job,
  condition ConfigError False (reason Resolved) with a Normal Event ``ConfigResolved``, phase
  Failed -> Pending -> Running, each phase change with its Event.

A re-check is the guarded handler ``config-recheck`` (a background slot of the operator-wide
limit, its own metrics); it runs only for QueueJobs that have something to check. Errors that
need a spec change (InvalidSpec, JobRejected) are not re-checked. kopf itself keeps no state
that blocks this: the create handler's permanent failure finishes kopf's handling cycle, which
removes its progress annotation (``workqueue.example.com/reconcile``) and stores the
last-handled configuration, as after a success.

This is not a ``kopf.timer``: kopf keeps the whole latest body of every object of a resource
that has any timer or daemon (for them to read), whether or not its ``when`` filter matches;
with the refresher's clock a QueueJob costs only the refresher's slim body.
"""

from __future__ import annotations

import contextlib
from typing import Any

import kopf

from queuejob import conditions, queues
from queuejob.errors import RECHECKED_REASONS, ConfigError
from queuejob.handlers.reconcile import start_queue
from queuejob.handlers.refresh import Outcome
from queuejob.limits import guarded
from queuejob.runtime import Runtime
from queuejob.spec import SpecError, parse
from queuejob.statuswriter import StatusWriter


def needs_config_recheck(status: kopf.Status, **_: Any) -> bool:
    """kopf ``when`` filter: Failed with a True ConfigError whose reason another object can fix."""
    error = conditions.get_condition(status.get("conditions"), "ConfigError")
    return (
        status.get("phase") == "Failed"
        and error is not None
        and error.get("status") == "True"
        and error.get("reason") in RECHECKED_REASONS
    )


async def recheck_when_due(uid: str, memo: kopf.Memo, **kwargs: Any) -> Outcome:
    """The refresher's run for a QueueJob that :func:`needs_config_recheck`: the re-check if
    it is due, and when the next one is (a re-check that failed for good, as when seeding finds
    the items invalid, is recorded on the QueueJob and does not stop the clock)."""
    runtime: Runtime = memo.runtime
    every = runtime.settings.config_recheck_interval
    wait = runtime.pacer.recheck_wait(uid, every)
    if wait > 0:
        return Outcome(idle=True, next_in=wait)
    with contextlib.suppress(kopf.PermanentError):  # recorded by the guard (condition, Event)
        await config_recheck(uid=uid, memo=memo, **kwargs)
    runtime.pacer.rechecked(uid, every)
    return Outcome(idle=True, next_in=every)


@guarded("config-recheck", kind="timer")
async def config_recheck(
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
    """Read the references again; start the QueueJob once they resolve (see the module doc)."""
    if not needs_config_recheck(status):
        return  # the filter matched an older body; a change handler has moved on since
    runtime: Runtime = memo.runtime
    writer = StatusWriter(body, status, patch, logger, runtime.metrics)
    try:
        qspec = parse(spec)
    except SpecError as exc:
        logger.debug(f"Config re-check: invalid spec: {exc}")
        return
    try:
        items = await queues.load_items(qspec, namespace)
        target = await queues.resolve_target(qspec, namespace, runtime.settings)
    except ConfigError as exc:
        logger.debug(f"Config re-check: still {exc.reason}: {exc.message}")
        message = exc.user_message(runtime.settings.config_recheck_interval)
        writer.condition("ConfigError", True, exc.reason, message)
        return
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
