"""On delete: remove the queue's Redis keys; the finalizer holds the QueueJob until then.

The Job, its pods and the Secret go by garbage collection (ownerReferences). While Redis is
unreachable the handler retries with backoff, so keys are never orphaned; a QueueJob whose Redis
cannot be configured at all (e.g. its password Secret is gone) is released with a warning.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from queuejob import naming, queues
from queuejob.errors import ConfigError
from queuejob.limits import guarded
from queuejob.runtime import Runtime
from queuejob.spec import SpecError, parse


@kopf.on.delete(naming.GROUP, naming.VERSION, naming.PLURAL, id="cleanup")
@guarded("cleanup")
async def cleanup(
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str,
    name: str,
    uid: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Delete the queue's Redis keys."""
    runtime: Runtime = memo.runtime
    queue_name = status.get("queue") or naming.queue_name(namespace, name, uid)
    try:
        qspec = parse(spec)
        target = await queues.resolve_target(qspec, namespace, runtime.settings)
    except (SpecError, ConfigError) as exc:
        logger.warning(f"Cannot reach the queue's Redis ({exc}); its keys are left behind")
        return
    queue = queues.open_queue(target, queue_name, runtime.settings)
    removed = await asyncio.to_thread(queue.delete)
    runtime.metrics.forget_queue(f"{namespace}/{name}")
    logger.info(f"Queue {queue_name}: {removed} Redis keys removed")
