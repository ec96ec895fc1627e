"""Typed errors of the work queue; every message names its cause.

``QueueError`` is the base. Redis-level failures are translated by :func:`translate` so callers
never have to catch redis-py exceptions:

- ``QueueUnavailableError``: Redis unreachable, the connection broke, or a Redis Cluster cannot
  serve the queue's slot for now (failover, migration) (nothing was lost: a
  script either ran completely or not at all; an item leaves the in-flight set only when its
  acknowledgement succeeded).
- ``QueueAuthError``: authentication failed (wrong or missing password, or ACL denial).
- ``QueueTypeError``: one of the queue's keys holds a value of the wrong Redis type.
- ``StaleLeaseError``: the caller no longer holds the lease (it expired and was re-leased, reaped,
  completed by someone else, or dead-lettered).
- ``ItemError``: an item is not a non-empty string, or too large.
- ``QueueConfigError``: an invalid queue setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from redis.cluster import RedisCluster


class QueueError(Exception):
    """Base class of all work-queue errors."""


class QueueUnavailableError(QueueError):
    """Redis could not be reached or the connection broke mid-call."""


class QueueAuthError(QueueError):
    """Redis refused the credentials (or the user lacks permission)."""


class QueueTypeError(QueueError):
    """A queue key exists with the wrong Redis type (e.g. someone SET a string on it)."""


class StaleLeaseError(QueueError):
    """The lease is no longer held by the caller; the acknowledgement was refused."""

    def __init__(self, item: str, reason: str) -> None:
        super().__init__(f"stale lease on item {item!r}: {reason}")
        self.item = item
        self.reason = reason


class ItemError(QueueError, ValueError):
    """An item is of the wrong type, empty, or larger than ``max_item_bytes``."""


class QueueConfigError(QueueError, ValueError):
    """A queue setting is out of range; the message names the field."""


#: Every exception redis-py raises for a failed call. ``RedisClusterException`` is not a
#: ``RedisError``: a cluster client raises it when no node answers its read of the slot map, for
#: example while the node behind the cluster's address refuses the caller's user (a node that
#: restarted without its ACL file, until the operator puts the user back).
REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)

#: Redis Cluster states that pass (a failover, a slot migration): not a failed command.
_CLUSTER_UNAVAILABLE = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
    redis.exceptions.RedisClusterException,
)


def describe(client: redis.Redis | RedisCluster) -> str:
    """``host:port/db`` of a client (``cluster host:port,...`` of a Redis Cluster client), for
    error messages (never the password)."""
    if isinstance(client, RedisCluster):
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        nodes = ",".join(sorted(node.name for node in primaries)[:3])
        return f"cluster {nodes or '(no reachable node)'}"
    kwargs = client.get_connection_kwargs()
    if kwargs.get("unix_socket_path"):
        return f"unix:{kwargs['unix_socket_path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def translated(
    client: redis.Redis | RedisCluster,
    what: str,
    exc: redis.exceptions.RedisError | redis.exceptions.RedisClusterException,
) -> QueueError:
    """The typed :class:`QueueError` for a redis-py error raised while doing ``what``."""
    where = describe(client)
    text = str(exc)
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return QueueAuthError(
            f"{what}: Redis at {where} refused authentication ({text}); check the password"
        )
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return QueueAuthError(f"{what}: Redis at {where} denied permission ({text})")
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return QueueUnavailableError(f"{what}: Redis at {where} is unreachable ({text})")
    if isinstance(exc, _CLUSTER_UNAVAILABLE):
        return QueueUnavailableError(
            f"{what}: Redis {where} cannot serve the queue's slot now ({type(exc).__name__}: "
            f"{text}); a failover or slot migration is under way"
        )
    if "NOAUTH" in text or "WRONGPASS" in text:
        return QueueAuthError(f"{what}: Redis at {where} requires authentication ({text})")
    if "WRONGTYPE" in text:
        return QueueTypeError(f"{what}: {text}")
    return QueueError(f"{what}: Redis error: {text}")


@contextlib.contextmanager
def translate(client: redis.Redis | RedisCluster, what: str) -> Iterator[None]:
    """Re-raise redis-py errors raised in the block as typed :class:`QueueError` subclasses."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise translated(client, what, exc) from exc
