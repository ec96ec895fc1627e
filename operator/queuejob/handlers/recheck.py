"""On a slow timer: retry a QueueJob that failed because a referenced object was missing.

A missing ConfigMap or Secret (or key), or a ConfigMap without valid items, is a permanent
``ConfigError`` (phase Failed, one Warning Event, no retry storm), yet the user fixes it without
touching the QueueJob: by creating or editing that object. Every
``QUEUEJOB_CONFIG_RECHECK_INTERVAL`` seconds (first run one interval after the failure) this
timer reads the references again:

- still missing: a debug log line only; the ConfigError condition is rewritten only if its
  reason or message changed (e.g. the ConfigMap now exists but the Secret does not), so no
  Events and no status writes per check;
- resolved: the normal start (:func:`~queuejob.handlers.reconcile.start_queue`): seed, Job,
  condition ConfigError False (reason Resolved) with a Normal Event ``ConfigResolved``, phase
  Failed -> Pending -> Running, each phase change with its Event.

The ``when`` filter :func:`needs_config_recheck` keeps the timer off every other QueueJob, so it
takes a slot of the operator-wide concurrency limit only when it has something to check. Errors
that need a spec change (InvalidSpec, JobRejected) are not re-checked. kopf itself keeps no
state that blocks this: the create handler's permanent failure finishes kopf's handling cycle,
which removes its progress annotation (``workqueue.example.com/reconcile``) and stores the
last-handled configuration, as after a success.
"""

from __future__ import annotations

from typing import Any

import kopf

from queuejob import conditions, naming, queues
from queuejob import settings as qj_settings
from queuejob.errors import RECHECKED_REASONS, ConfigError
from queuejob.handlers.reconcile import start_queue
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


_INTERVAL = qj_settings.from_env().config_recheck_interval


@kopf.timer(
    naming.GROUP,
    naming.VERSION,
    naming.PLURAL,
    id="config-recheck",
    interval=_INTERVAL,
    initial_delay=_INTERVAL,
    when=needs_config_recheck,
)
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
