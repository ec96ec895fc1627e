"""On delete: remove the queue's Redis keys; the finalizer holds the QueueJob until then.

The Job, its pods and the Secret go by garbage collection (ownerReferences). While Redis is
unreachable the handler retries with backoff, so keys are never orphaned; a QueueJob whose Redis
cannot be configured at all (e.g. its password Secret is gone) is released with a warning.
"""

from __future__ import annotations

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
    runtime.pacer.forget(uid)
    runtime.stabilizer.forget(uid)
    queue_name = status.get("queue") or naming.queue_name(namespace, name, uid)
    try:
        removed = await queues.delete_queue(parse(spec), namespace, queue_name, runtime.settings)
    except (SpecError, ConfigError) as exc:
        logger.warning(f"Cannot reach the queue's Redis ({exc}); its keys are left behind")
        return
    runtime.metrics.forget_queue(f"{namespace}/{name}")
    logger.info(f"Queue {queue_name}: {removed} Redis keys removed")
