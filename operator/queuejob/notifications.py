"""Queue-change notifications from Redis: which QueueJob's queue changed, as it happens.

Every script that changes a queue (seed, lease, complete, fail, release, redrive) publishes an
empty message on the queue's own channel ``wq:{<queue>}:events`` with ``SPUBLISH`` (see
``workqueue/scripts/lib.lua``). :class:`QueueNotifications` keeps one sharded pub/sub
subscription per Redis target (URL and password) and ``SSUBSCRIBE``\\ s the channel of every
queue it is told to :meth:`~QueueNotifications.watch`; each message calls ``on_change(uid)``.

Guarantees and limits:

- a message names only the queue, never what changed: the receiver reads the queue itself, so
  a lost, duplicated or reordered message costs at most one refresh or one resync period;
- pub/sub is at-most-once: messages published while the subscription is down are lost. After
  every (re)connection, ``on_change`` is called for *every* watched queue of that target, as a
  client-go informer relists after its watch broke;
- a broken connection is retried with a capped exponential backoff (0.5 s doubling to 30 s),
  for as long as a queue of that target is watched;
- on a Redis Cluster the subscription follows the slot of each channel (redis-py's
  ``ClusterPubSub``); on one server it is one connection for all channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio
import redis.asyncio.cluster

from workqueue.connect import CLUSTER_SCHEMES
from workqueue.keys import QueueKeys

logger = logging.getLogger(__name__)

Target = tuple[str, str | None]  # (URL, password)


def channel(queue: str) -> str:
    """The notification channel of ``queue`` (under the queue's hash-tagged key prefix)."""
    return QueueKeys(queue).prefix + "events"


def _client(url: str, password: str | None, timeout: float) -> Any:
    kwargs: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": timeout}
    if password:
        kwargs["password"] = password
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme)
    if scheme is None:
        return redis.asyncio.Redis.from_url(url, **kwargs)
    plain = urlunsplit((scheme, parts.netloc, "", parts.query, ""))
    return redis.asyncio.cluster.RedisCluster.from_url(plain, **kwargs)


class _Subscription:
    """One target's subscriber task and the channels it should hold."""

    def __init__(self, target: Target, owner: QueueNotifications) -> None:
        self.target = target
        self.owner = owner
        self.uids: dict[str, str] = {}  # channel -> QueueJob uid
        self.subscribed: set[str] = set()
        self.changed = asyncio.Event()  # the channel set changed
        self.connected = False
        self.connects = 0
        self.task = asyncio.create_task(self._run(), name=f"queue-notifications {target[0]}")

    async def _sync(self, pubsub: Any) -> None:
        """Bring the server-side subscriptions in line with ``uids``."""
        self.changed.clear()
        wanted = set(self.uids)
        new, gone = wanted - self.subscribed, self.subscribed - wanted
        if new:
            await pubsub.ssubscribe(*sorted(new))
            self.subscribed |= new
        if gone:
            await pubsub.sunsubscribe(*sorted(gone))
            self.subscribed -= gone

    async def _run(self) -> None:
        delay = 0.5
        url, password = self.target
        while True:
            client = _client(url, password, self.owner.timeout)
            pubsub = client.pubsub()
            try:
                self.subscribed = set()
                await self._sync(pubsub)
                if not self.subscribed:
                    # ssubscribe with no channel connects nothing: ping to prove the server.
                    await client.ping()
                self.connected = True
                self.connects += 1
                delay = 0.5
                # Anything published while we were not subscribed is lost: refresh them all.
                for uid in list(self.uids.values()):
                    self.owner.on_change(uid)
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(f"Queue notifications from {url}: {type(exc).__name__}: {exc}")
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)

    async def _listen(self, pubsub: Any) -> None:
        cluster = isinstance(pubsub, redis.asyncio.cluster.ClusterPubSub)
        while True:
            if self.changed.is_set():
                await self._sync(pubsub)
            if not self.subscribed:
                await self.changed.wait()
                continue
            if cluster:
                message = await pubsub.get_sharded_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            else:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message.get("type") != "smessage":
                continue
            uid = self.uids.get(str(message.get("channel")))
            if uid is not None:
                self.owner.received += 1
                self.owner.on_change(uid)


class QueueNotifications:
    """Subscriptions to the change channels of watched queues (see the module doc)."""

    def __init__(self, on_change: Callable[[str], None], timeout: float = 5.0) -> None:
        self.on_change = on_change
        self.timeout = timeout
        self.received = 0
        self._subs: dict[Target, _Subscription] = {}
        self._where: dict[str, tuple[Target, str]] = {}  # uid -> (target, channel)

    def watch(self, url: str, password: str | None, queue: str, uid: str) -> None:
        """Call ``on_change(uid)`` whenever ``queue`` on that Redis changes (idempotent)."""
        target: Target = (url, password)
        chan = channel(queue)
        if self._where.get(uid) == (target, chan):
            return
        self.unwatch(uid)
        sub = self._subs.get(target)
        if sub is None:
            sub = self._subs[target] = _Subscription(target, self)
        sub.uids[chan] = uid
        sub.changed.set()
        self._where[uid] = (target, chan)

    def unwatch(self, uid: str) -> None:
        """Stop watching the queue of ``uid``; the last queue of a target closes its link."""
        where = self._where.pop(uid, None)
        if where is None:
            return
        target, chan = where
        sub = self._subs.get(target)
        if sub is None:
            return
        sub.uids.pop(chan, None)
        sub.changed.set()
        if not sub.uids:
            sub.task.cancel()
            del self._subs[target]

    @property
    def links_up(self) -> int:
        """Subscriptions (one per Redis target) connected now."""
        return sum(1 for sub in self._subs.values() if sub.connected)

    @property
    def channels(self) -> int:
        """Queue channels subscribed on the servers now."""
        return sum(len(sub.subscribed) for sub in self._subs.values() if sub.connected)

    def watching(self, uid: str) -> bool:
        return uid in self._where

    def connected(self, url: str, password: str | None) -> bool:
        """True while the subscription to that target is up."""
        sub = self._subs.get((url, password))
        return sub is not None and sub.connected

    async def close(self) -> None:
        """Cancel every subscription."""
        subs = list(self._subs.values())
        self._subs.clear()
        self._where.clear()
        for sub in subs:
            sub.task.cancel()
        for sub in subs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sub.task


__all__ = ["QueueNotifications", "channel"]
