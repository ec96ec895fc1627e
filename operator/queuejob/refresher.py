"""Event-driven status refreshes: a refresh per change, coalesced, instead of polling.

The :class:`Refresher` keeps the latest body of every QueueJob (from kopf's watch) and a
:class:`~workqueue.coalescing.CoalescingQueue` of QueueJob uids. What puts a uid in the queue:

- a notification on the queue's Redis channel (:mod:`queuejob.notifications`);
- a watch event of the QueueJob that a refresh must see (first sight, a new generation, a
  request annotation, the queue name, the phase, a ConfigError);
- a watch event of its worker Job (pods started, finished or failed change the Job's status);
- the refresh itself: at the queue's earliest lease expiry or retry (nothing notifies when a
  lease runs out), at a TTL removal or an autoscaler scale-down that falls due;
- the resync, the safety net for lost triggers (pub/sub is at-most-once): after every refresh
  that found the QueueJob live, the next one is queued when the :class:`RefreshPacer` says
  (``status_interval``, backing off while idle: ``queuejob.pacing``); when it is due it takes
  its turn under the operator-wide cap on resyncs per second, and is queued again for that turn
  if it must wait. There is no timer task per QueueJob.

Guarantees:

- every trigger waits ``delay`` seconds (``QUEUEJOB_NOTIFY_DELAY``) and all triggers of one
  QueueJob in that window give one refresh; a trigger during a refresh gives one more after it;
- a QueueJob is never refreshed by two workers at once, and ``workers`` refreshes run at most
  (each also takes a slot of the operator-wide limiter, like every handler);
- an idle QueueJob costs one entry in the queue and one resync per backed-off gap; a QueueJob
  with nothing to refresh (finished with no worker left and no TTL pending, not seeded, a
  configuration error) costs nothing until a watch event triggers it again;
- a kept body is slim and packed: it leaves out what a refresh never reads and what is most
  of a QueueJob's memory (``metadata.managedFields``, kubectl's and kopf's copies of the spec
  in their annotations), and is kept as JSON bytes, so it costs about 1.3 KiB per QueueJob
  (:mod:`queuejob.keptbodies`);
- a refresh's status patch is sent at once, and the returned object replaces the kept body, so
  the next refresh compares against what it wrote (no repeated phase Events); a refresh that
  carries out a request records it before it lets go of the QueueJob's lock (:meth:`keep`),
  so the refresh waiting for that lock never runs the request a second time.

kopf posts Events (``kopf.event``) through a queue it binds to each object's task; the workers
are therefore started from the first QueueJob watch event (:meth:`Refresher.ensure_started`),
whose context they inherit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import kopf

from queuejob import kube
from queuejob.keptbodies import KeptBodies, resource_version
from queuejob.notifications import QueueNotifications
from queuejob.pacing import RefreshPacer
from workqueue.coalescing import CoalescingQueue

logger = logging.getLogger(__name__)

#: Seconds after a lease's expiry before the refresh that reaps it (clock skew, rounding).
EXPIRY_MARGIN = 0.25

#: Runs one refresh of a body: returns the outcome (``queuejob.handlers.refresh.Outcome``).
RefreshFn = Callable[..., Awaitable[Any]]


def signature(raw: Mapping[str, Any]) -> tuple[Any, ...]:
    """What in a QueueJob a refresh must react to (status fields the refresh writes are not)."""
    meta = raw.get("metadata", {})
    status = raw.get("status") or {}
    annotations = meta.get("annotations") or {}
    config_error = [
        c.get("status") for c in status.get("conditions") or [] if c.get("type") == "ConfigError"
    ]
    return (
        meta.get("generation"),
        tuple(sorted((k, v) for k, v in annotations.items() if k.endswith("/request"))),
        status.get("queue"),
        status.get("phase"),
        tuple(config_error),
        bool(meta.get("deletionTimestamp")),
    )


class Refresher:
    """Bodies, the queue of due refreshes and the workers that run them (see the module doc)."""

    def __init__(
        self, run: RefreshFn, *, delay: float, workers: int, pacer: RefreshPacer | None = None
    ) -> None:
        if delay < 0 or workers < 1:
            raise ValueError(f"need delay >= 0 and workers >= 1, got {delay}, {workers}")
        self.run = run
        self.delay = delay
        self.workers = workers
        self.queue: CoalescingQueue[str] = CoalescingQueue()
        self.bodies = KeptBodies()
        self._signatures: dict[str, tuple[Any, ...]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.refreshes = 0
        self.memo: kopf.Memo | None = None
        self.settings: kopf.OperatorSettings | None = None
        self.notifications: QueueNotifications | None = None
        #: When each QueueJob's next resync is due (None: no resync, events only).
        self.pacer = pacer
        # QueueJobs queued for their resync only (not for a trigger or a time a refresh named).
        self._resyncs: set[str] = set()
        # Of those, the ones queued again for the turn the pacer gave them (run when due).
        self._turns: set[str] = set()
        #: Resyncs that came due and had to wait for a turn under the rate cap.
        self.resyncs_held = 0
        #: Refreshes asked for by a trigger or by a time a refresh named (a lease's expiry, a
        #: deadline); not the resyncs, nor a held resync queued again for its turn.
        self.triggers = 0

    def stats(self) -> dict[str, float]:
        """The figures behind ``queuejob.metrics.REFRESHER_METRICS``."""
        n = self.notifications
        return {
            "queuejob_refresh_queue_depth": len(self.queue) - len(self._resyncs),
            "queuejob_refresh_resyncs_queued": len(self._resyncs),
            "queuejob_refresh_resyncs_held": self.resyncs_held,
            "queuejob_refresh_processing": self.queue.processing,
            "queuejob_refresh_triggers": self.triggers,
            "queuejob_refresh_coalesced": self.queue.coalesced,
            "queuejob_refreshes": self.refreshes,
            "queuejob_queue_notifications": n.received if n is not None else 0,
            "queuejob_queue_notification_channels": n.channels if n is not None else 0,
        }

    # -- triggers ----------------------------------------------------------------------------

    def trigger(self, uid: str, delay: float | None = None) -> None:
        """Refresh ``uid`` in ``delay`` seconds (default: the coalescing delay), if known."""
        if uid in self.bodies:
            self._resyncs.discard(uid)
            self._turns.discard(uid)
            self.triggers += 1
            self.queue.add(uid, self.delay if delay is None else delay)

    def observe(self, raw: Mapping[str, Any], event_type: str | None) -> None:
        """A watch event of a QueueJob: keep its body; trigger if a refresh must see it."""
        uid = str(raw.get("metadata", {}).get("uid", ""))
        if not uid:
            return
        if event_type == "DELETED":
            self.forget(uid)
            return
        kept = self.bodies.version(uid)
        if kept is not None and kept > resource_version(raw):
            return  # older than what a refresh's own patch returned
        self.bodies.put(uid, raw)
        sig = signature(raw)
        if self._signatures.get(uid) != sig:
            self._signatures[uid] = sig
            self.trigger(uid)

    def latest(self, uid: str, body: Mapping[str, Any]) -> kopf.Body | None:
        """The kept body of ``uid`` if it is newer than ``body`` (a refresh that waited for the
        QueueJob's lock must not act on the state from before the one that held it)."""
        kept = self.bodies.version(uid)
        if kept is None or kept <= resource_version(body):
            return None
        return kopf.Body(cast(kopf.RawBody, self.bodies[uid]))

    def forget(self, uid: str) -> None:
        """A deleted QueueJob: drop its body and any queued refresh."""
        self.bodies.discard(uid)
        self._signatures.pop(uid, None)
        self.queue.forget(uid)
        self._resyncs.discard(uid)
        self._turns.discard(uid)
        if self.pacer is not None:
            self.pacer.forget(uid)
        if self.notifications is not None:
            self.notifications.unwatch(uid)

    # -- workers -----------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the workers (once), in the caller's context (see the module doc)."""
        if self._tasks:
            return
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._work(), name=f"queuejob-refresh-{i}"))

    async def stop(self) -> None:
        """Cancel the workers and wait for them."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            uid = await self.queue.get()
            if not self._has_turn(uid):
                continue
            self._resyncs.discard(uid)
            self._turns.discard(uid)
            after: float | None = None
            resync = False
            try:
                after, resync = await self._refresh(uid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception(f"Refresh of {uid} failed: {exc}")
                after = 5.0
            finally:
                self.queue.done(uid)
            queued = after is not None and uid in self.bodies and self.queue.add(uid, after)
            if queued and resync:
                self._resyncs.add(uid)
            elif queued:
                self.triggers += 1

    def _has_turn(self, uid: str) -> bool:
        """True if ``uid`` may be refreshed now: anything but a resync, or a resync whose turn
        under the pacer's rate cap has come; else it is queued again for its turn."""
        if self.pacer is None or uid not in self._resyncs or uid in self._turns:
            return True
        wait = self.pacer.admit()
        if wait <= 0:
            return True
        self.resyncs_held += 1
        self.queue.done(uid)  # nothing was added meanwhile: no await since the get
        self.queue.add(uid, wait)
        self._turns.add(uid)
        return False

    async def _refresh(self, uid: str) -> tuple[float | None, bool]:
        """One refresh of ``uid``: the seconds until the next one (None: none), and whether
        that next one is only the resync."""
        raw = self.bodies.get(uid)
        if raw is None:
            return None, False
        body = kopf.Body(cast(kopf.RawBody, raw))
        meta = body.metadata
        if meta.get("deletionTimestamp"):
            return None, False
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        patch = kopf.Patch()
        obj_logger: kopf.Logger = (
            kopf.ObjectLogger(body=body, settings=self.settings)
            if self.settings is not None
            else logger
        )
        self.refreshes += 1
        outcome: Any = None
        retry: float | None = None
        try:
            outcome = await self.run(
                body=body,
                spec=body.spec,
                meta=meta,
                status=body.status,
                patch=patch,
                namespace=namespace,
                name=name,
                uid=uid,
                memo=self.memo,
                logger=obj_logger,
            )
        except kopf.TemporaryError as exc:
            retry = float(exc.delay or self.delay or 1.0)
        except kopf.PermanentError:
            pass
        finally:
            if patch:
                await self._apply(uid, namespace, name, patch)
        if retry is not None or outcome is None:
            if outcome is None and retry is None and self.pacer is not None:
                self.pacer.forget(uid)  # nothing to refresh: no resync until an event
            return retry, False
        watch = getattr(outcome, "watch", None)
        if watch is not None and self.notifications is not None:
            self.notifications.watch(watch.url, watch.password, watch.queue, uid)
        due = next_due(outcome, self.delay)
        if self.pacer is None:
            return due, False
        kept = self.bodies.version(uid)
        version = str(kept) if kept is not None else ""
        self.pacer.ran(
            uid, version, idle=outcome.idle, next_in=outcome.next_in if outcome.idle else None
        )
        resync = max(self.delay, self.pacer.wait(uid))
        if due is not None and due <= resync + 0.01:
            return due, False  # a time the refresh named (the resync is no later)
        return resync, True

    async def _apply(self, uid: str, namespace: str, name: str, patch: kopf.Patch) -> None:
        """Send the refresh's patch now; keep the object the API returns."""
        body = dict(patch)
        status = body.pop("status", None)
        latest: dict[str, Any] | None = None
        if body:
            latest = await kube.patch_queuejob(namespace, name, body) or latest
        if status:
            latest = await kube.patch_queuejob(namespace, name, {"status": status}, status=True)
        self.keep(uid, latest)

    def keep(self, uid: str, latest: Mapping[str, Any] | None) -> None:
        """Keep ``latest`` (an object a patch returned) as the body of ``uid`` if it is newer."""
        kept = self.bodies.version(uid)
        if latest is not None and kept is not None and resource_version(latest) >= kept:
            self.bodies.put(uid, latest)
            self._signatures[uid] = signature(latest)


def next_due(outcome: Any, delay: float) -> float | None:
    """Seconds until the refresh an outcome asks for (lease expiry, deadline), or None."""
    times = []
    if outcome.timer_in is not None:
        times.append(outcome.timer_in + EXPIRY_MARGIN)
    if outcome.next_in is not None:
        times.append(outcome.next_in)
    if not times:
        return None
    return float(max(delay, min(times)))


__all__ = ["Refresher", "next_due", "signature"]
