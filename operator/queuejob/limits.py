"""Wrap every handler in the operator-wide limits and the client-go style failure policy.

:func:`guarded` decorates a kopf handler so that each invocation

1. waits for the QueueJob's own lock, so a timer never interleaves with a change handler of
   the same object (kopf serializes change handlers per object but runs timers beside them);
   change handlers are counted *before* that lock, so the per-object histogram also shows
   that kopf's own serialization holds (it would record 2 if kopf overlapped them);
2. waits for a slot of the operator-wide :class:`~workqueue.concurrency.ConcurrencyLimiter`
   (max concurrent handlers and optional QPS), measured as workqueue depth / queue duration;
   waiters are queued fairly per namespace (the *flow*: fair queuing with shuffle sharding,
   so one namespace's backlog does not hold another namespace's handlers behind it);
   timers ask for a background slot, so a freed slot goes to a waiting change handler first
   (creates are not queued behind the periodic status refresh of every other QueueJob);
3. runs, measured as work duration, unfinished work and longest running processor;
4. maps failures: :class:`~queuejob.errors.ConfigError` -> condition ``ConfigError``, phase
   Failed, a Warning Event and ``kopf.PermanentError`` (no retries); any other exception ->
   ``kopf.TemporaryError`` with the delay of an exponential, jittered per-item backoff keyed by
   (QueueJob, handler), forgotten again on success.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import kopf

from queuejob.errors import ConfigError
from queuejob.runtime import Runtime
from queuejob.statuswriter import StatusWriter

Handler = Callable[..., Awaitable[Any]]

#: The ``name`` label of every guarded handler (declared in the metrics at startup).
HANDLER_LABELS: list[str] = []
Kind = Literal["change", "timer"]


def _fail_config(kwargs: dict[str, Any], runtime: Runtime, exc: ConfigError) -> None:
    """Record a permanent configuration error on the QueueJob: condition, phase, one Event.

    The condition carries the specific reason (e.g. ConfigMapNotFound). Exactly one Warning
    Event, reason ConfigError, tells the user: the phase change's own Event when the QueueJob
    moves to Failed, or a plain one when it is Failed already.
    """
    writer = StatusWriter(
        kwargs["body"], kwargs["status"], kwargs["patch"], kwargs["logger"], runtime.metrics
    )
    message = exc.user_message(runtime.settings.config_recheck_interval)
    writer.condition("ConfigError", True, exc.reason, message)
    if writer.phase == "Failed":
        kopf.event(kwargs["body"], type="Warning", reason="ConfigError", message=message)
    writer.phase_to("Failed", "ConfigError", message)


def guarded(handler_id: str, kind: Kind = "change") -> Callable[[Handler], Handler]:
    """Decorator applying the limits and failure policy above to a handler named ``handler_id``."""

    label = f"handler:{handler_id}"
    HANDLER_LABELS.append(label)

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(**kwargs: Any) -> Any:
            runtime: Runtime = kwargs["memo"].runtime
            metrics = runtime.metrics
            uid: str = kwargs["uid"] or f"{kwargs['namespace']}/{kwargs['name']}"
            key = f"{kwargs['namespace']}/{kwargs['name']}:{handler_id}"
            logger = kwargs["logger"]

            metrics.adds.labels(label).inc()
            metrics.depth.labels(label).inc()
            waiting = True
            enqueued = time.monotonic()
            runtime.object_users[uid] += 1
            if kind == "change":
                runtime.object_changing[uid] += 1
                metrics.object_concurrency.observe(runtime.object_changing[uid])
            try:
                lock = runtime.object_locks[uid]
                await lock.acquire()
                runtime.object_running[uid] += 1
                metrics.object_concurrency.observe(runtime.object_running[uid])
                try:
                    async with runtime.limiter.slot(
                        key, background=kind == "timer", flow=kwargs["namespace"] or ""
                    ):
                        waiting = False
                        metrics.depth.labels(label).dec()
                        metrics.queue_duration.labels(label).observe(time.monotonic() - enqueued)
                        metrics.concurrency.observe(runtime.limiter.in_flight)
                        metrics.in_flight.set(runtime.limiter.in_flight)
                        metrics.max_in_flight.set(runtime.limiter.max_in_flight)
                        # Leader election: exits the process if the Lease may have passed on.
                        check_leadership = kwargs["memo"].get("check_leadership")
                        if check_leadership is not None:
                            check_leadership()
                        token = metrics.running.start(label)
                        started = time.monotonic()
                        try:
                            result = await fn(**kwargs)
                        finally:
                            metrics.work_duration.labels(label).observe(time.monotonic() - started)
                            metrics.running.stop(token)
                            metrics.in_flight.set(runtime.limiter.in_flight - 1)
                finally:
                    runtime.object_running[uid] -= 1
                    lock.release()
            except (kopf.PermanentError, kopf.TemporaryError):
                raise
            except ConfigError as exc:
                runtime.backoff.forget(key)
                _fail_config(kwargs, runtime, exc)
                raise kopf.PermanentError(f"{exc.reason}: {exc.message}") from exc
            except Exception as exc:
                delay = runtime.backoff.when(key)
                attempt = runtime.backoff.num_requeues(key)
                metrics.retries.labels(label).inc()
                metrics.retry_delay.labels(label).observe(delay)
                logger.warning(
                    f"Handler {handler_id} failed: {type(exc).__name__}: {exc}; "
                    f"retry {attempt} in {delay:.3f}s"
                )
                raise kopf.TemporaryError(str(exc), delay=delay) from exc
            else:
                runtime.backoff.forget(key)
                return result
            finally:
                if waiting:
                    metrics.depth.labels(label).dec()
                if kind == "change":
                    runtime.object_changing[uid] -= 1
                runtime.object_users[uid] -= 1
                runtime.forget_object(uid)

        return wrapper

    return decorate
