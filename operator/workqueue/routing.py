"""Which Redis server runs a queue's scripts: one server, or the master of its Cluster slot.

A queue's keys share one hash tag, so on a Redis Cluster they live in one slot, served by one
master at a time. :class:`SlotRoute` answers "which node client serves this slot now" from
redis-py's ``RedisCluster`` slot map, and refreshes that map when Redis says it moved
(``MOVED``), when a connection to the node broke (the master may have died and a replica been
promoted) or when the cluster reported ``CLUSTERDOWN``. On a plain ``redis.Redis`` it is the
client itself and nothing ever moves.

The queue sends its worker calls on connections of the node client returned here (never
re-sent, see ``workqueue.redisqueue``); redirections that Redis answers *instead of* running a
command (``MOVED``, ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``, and ``READONLY`` from a node that
became a replica) are safe to follow, because nothing ran. :func:`redirect_of` classifies them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TypeAlias

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from workqueue.errors import REDIS_ERRORS

#: A client of one server or of a Redis Cluster.
RedisClient: TypeAlias = "redis.Redis | RedisCluster"


@dataclass(frozen=True, slots=True)
class Redirect:
    """What to do after a reply that means "not run here": ``kind`` is ``moved`` (refresh the
    slot map, retry; also for ``READONLY``, a node that became a replica), ``ask`` (send
    ``ASKING`` + the command to ``address`` once), ``again`` (the slot is migrating with the
    keys split: wait, retry) or ``down`` (the cluster cannot serve the slot yet, e.g. during a
    failover: refresh, wait, retry)."""

    kind: str
    address: str = ""


def redirect_of(exc: redis.exceptions.ResponseError) -> Redirect | None:
    """The redirection an error reply asks for, or None for a real error of the command."""
    if isinstance(exc, redis.exceptions.MovedError):
        return Redirect("moved", f"{exc.host}:{exc.port}")
    if isinstance(exc, redis.exceptions.AskError):
        return Redirect("ask", f"{exc.host}:{exc.port}")
    if isinstance(exc, redis.exceptions.TryAgainError):
        return Redirect("again")
    if isinstance(exc, redis.exceptions.ClusterDownError):
        return Redirect("down")
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        # The node is a replica now (a failover the slot map has not caught up with): a replica
        # applies no write of a client, so nothing ran; ask the new master.
        return Redirect("moved")
    return None


class SlotRoute:
    """The node client serving the slot of ``key`` on ``client`` (see the module doc)."""

    def __init__(self, client: RedisClient, key: str) -> None:
        self.client = client
        self.key = key
        self.cluster = isinstance(client, RedisCluster)
        self.slot = key_slot(key.encode()) if isinstance(client, RedisCluster) else -1
        self._stale = False
        self._lock = threading.Lock()

    def owner(self) -> redis.Redis:
        """The client of the server that serves the slot (after a refresh if one is due)."""
        client = self.client
        if not isinstance(client, RedisCluster):
            return client
        if self._stale:
            self.refresh()
        node = client.nodes_manager.get_node_from_slot(self.slot)
        return client.get_redis_connection(node)

    def at(self, address: str) -> redis.Redis:
        """The client of the cluster node ``host:port`` (the target of an ``ASK``)."""
        client = self.client
        if not isinstance(client, RedisCluster):
            return client
        host, _, port = address.rpartition(":")
        node = client.get_node(host=host, port=int(port))  # type: ignore[no-untyped-call]
        if node is None:
            self.refresh()
            node = client.get_node(host=host, port=int(port))  # type: ignore[no-untyped-call]
            if node is None:
                raise redis.exceptions.ConnectionError(f"cluster node {address} is unknown")
        return client.get_redis_connection(node)

    def invalidate(self) -> None:
        """Refresh the slot map before the next :meth:`owner` (a connection to a node broke)."""
        if self.cluster:
            self._stale = True

    def refresh(self) -> None:
        """Read the slot map from the cluster again (deduplicated across threads by redis-py)."""
        client = self.client
        if not isinstance(client, RedisCluster):
            return
        with self._lock:
            self._stale = False
        try:
            client.nodes_manager.initialize()
        except REDIS_ERRORS:
            self._stale = True
            raise
