"""Startup and cleanup: apply the settings to kopf, build the runtime, serve metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import kopf

from queuejob import kube, naming, redisconn
from queuejob import settings as qj_settings
from queuejob.handlers.events import refresh_if_needed
from queuejob.limits import HANDLER_LABELS
from queuejob.metrics import Metrics
from queuejob.notifications import QueueNotifications
from queuejob.refresher import Refresher
from queuejob.runtime import Runtime

_QUIET = frozenset({"Handler 'observe' succeeded.", "Handler 'job' succeeded."})


def _quiet_event_success(record: logging.LogRecord) -> bool:
    """Drop kopf's "Handler '...' succeeded." lines of the watch-event handlers (one per
    event)."""
    return not (record.levelno == logging.INFO and record.getMessage() in _QUIET)


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Read ``QUEUEJOB_*`` settings, configure kopf, start the metrics endpoint."""
    config = qj_settings.from_env()
    # Readable logs: no line per timer run or per liveness probe request.
    logging.getLogger("kopf.objects").addFilter(_quiet_event_success)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    settings.persistence.finalizer = config.finalizer
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.GROUP, key=naming.DIFFBASE_KEY
    )
    # Only warnings/errors of handler logs become Kubernetes Events; phase changes post their own.
    settings.posting.level = logging.WARNING
    settings.queueing.worker_limit = config.kopf_worker_limit or None
    settings.queueing.error_delays = config.kopf_error_delays
    settings.execution.max_workers = config.kopf_max_workers
    # asyncio.to_thread (Redis and Kubernetes calls) uses the loop's default executor.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=config.kopf_max_workers, thread_name_prefix="queuejob-io"
        )
    )
    kube.api_client(pool_size=config.kopf_max_workers)
    # `queuejob operator` serves the metrics before kopf starts (a standby exports them too)
    # and hands them over in the memo; `kopf run -m queuejob.operator_main` does not.
    served: Metrics | None = memo.get("metrics")
    runtime = Runtime.build(config, served)
    memo.runtime = runtime
    for label in HANDLER_LABELS:
        runtime.metrics.declare_handler(label)
    if served is None:
        runtime.metrics.leader.set(1)
        runtime.metrics.serve(config.metrics_address, config.metrics_port)
    # Event-driven refreshes hold at most half of the handler slots: a burst of creates keeps
    # the other half even when refreshes slip into the gaps between them.
    refresher = Refresher(
        refresh_if_needed,
        delay=config.notify_delay,
        workers=max(1, config.max_concurrent_handlers // 2),
        pacer=runtime.pacer,
    )
    refresher.memo = memo
    refresher.settings = settings
    refresher.notifications = QueueNotifications(refresher.trigger, timeout=config.redis_timeout)
    runtime.refresher = refresher
    runtime.metrics.sample(refresher.stats)
    limiter = runtime.limiter
    runtime.metrics.sample_flows(lambda: {str(k): v for k, v in limiter.flows().items()})
    logger.info(f"QueueJob operator settings: {qj_settings.describe(config)}")
    if config.metrics_port:
        logger.info(f"Metrics on http://{config.metrics_address}:{config.metrics_port}/metrics")


@kopf.on.cleanup()
async def close(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Close Redis connections on shutdown; raise the stop flag ``queuejob operator`` gave kopf.

    When kopf stops for its own reasons (its SIGTERM handler), the task it runs to wait for that
    flag is left waiting, and kopf gives such leftover tasks 5 s before cancelling them: setting
    the flag here ends it at once (a leader releases its Lease 5 s sooner).
    """
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None and runtime.refresher is not None:
        await runtime.refresher.stop()
        if runtime.refresher.notifications is not None:
            await runtime.refresher.notifications.close()
    flag = memo.get("stop_flag")
    if isinstance(flag, asyncio.Event):
        flag.set()
    redisconn.close_all()
    logger.info("QueueJob operator stopped")
