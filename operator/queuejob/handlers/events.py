"""Watch events that trigger event-driven refreshes (``queuejob.refresher``).

- every QueueJob watch event keeps the QueueJob's latest body and, if something a refresh must
  see changed, triggers a refresh; a deletion forgets it;
- every watch event of a worker Job (label ``workqueue.example.com/queuejob``) goes into the
  cache of the worker Jobs (``queuejob.jobcache``), then triggers a refresh of the QueueJob that
  owns it: pods starting, finishing or failing change the Job's status (active, succeeded,
  failed indexes, conditions), which the refresh reads from that cache.

These are kopf event handlers: no finalizer, no persisted state, no retries; they only queue
work, which runs in the refresher's workers under the operator-wide limits.
"""

from __future__ import annotations

from typing import Any

import kopf

from queuejob import naming, operate
from queuejob.handlers.recheck import needs_config_recheck, recheck_when_due
from queuejob.handlers.refresh import needs_refresh, refresh
from queuejob.runtime import Runtime


async def refresh_if_needed(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, **kwargs: Any
) -> Any:
    """The refresher's run function: the configuration re-check of a QueueJob that failed for
    a missing object (when due; a request waiting on it is refused by the refresh), else the
    guarded refresh, unless it would do nothing."""
    runtime: Runtime = kwargs["memo"].runtime
    if needs_config_recheck(status) and operate.pending_request(meta, status) is None:
        return await recheck_when_due(body=body, spec=spec, meta=meta, status=status, **kwargs)
    runtime.pacer.recheck_over(str(kwargs["uid"]))
    if not needs_refresh(spec, status, meta):
        return None
    return await refresh(body=body, spec=spec, meta=meta, status=status, **kwargs)


@kopf.on.event(naming.GROUP, naming.VERSION, naming.PLURAL, id="observe")
async def observe_queuejob(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Keep the body; trigger a refresh when a refresh must see the change."""
    runtime: Runtime = memo.runtime
    refresher = runtime.refresher
    if refresher is None:
        return
    refresher.ensure_started()
    raw = event.get("object") or {}
    refresher.observe(raw if isinstance(raw, dict) else dict(body), event.get("type"))


@kopf.on.event("batch", "v1", "jobs", labels={naming.QUEUEJOB_LABEL: kopf.PRESENT}, id="job")
async def observe_job(
    event: kopf.RawEvent, body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    """A worker Job changed: keep it in the cache, then refresh the QueueJob that owns it."""
    runtime: Runtime = memo.runtime
    raw = event.get("object") or {}
    runtime.jobs.observe(raw if isinstance(raw, dict) else dict(body), event.get("type"))
    refresher = runtime.refresher
    if refresher is None:
        return
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == naming.KIND and owner.get("uid"):
            refresher.trigger(str(owner["uid"]))
