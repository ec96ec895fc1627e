"""Redis clients for the operator, one per (URL, user, password), with fail-fast timeouts.

Handlers call Redis through the synchronous ``workqueue.LeaseQueue`` in a worker thread
(``asyncio.to_thread``): the queue's Lua scripts and error translation exist once, in the
``workqueue`` package, and the thread pool (``QUEUEJOB_KOPF_MAX_WORKERS``) bounds the number of
Redis connections. Clients retry a broken connection once, immediately; longer outages surface
as ``QueueUnavailableError`` so that the *handler* backs off (kopf TemporaryError with a delay),
instead of a thread sleeping inside redis-py.
"""

from __future__ import annotations

import threading

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from workqueue.connect import client_from_url

_lock = threading.Lock()
_clients: dict[tuple[str, str | None, float, str | None], redis.Redis | RedisCluster] = {}


def client(
    url: str, password: str | None, timeout: float, username: str | None = None
) -> redis.Redis | RedisCluster:
    """A shared, thread-safe client (pool) for ``url``; ``password`` (and ``username``, an ACL
    user) override the URL's.

    ``redis+cluster://host:port`` gives a ``RedisCluster`` client (``workqueue.connect``)."""
    key = (url, password, timeout, username)
    with _lock:
        found = _clients.get(key)
        if found is None:
            kwargs: dict[str, object] = {
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "retry": Retry(NoBackoff(), 1),
                "decode_responses": True,
            }
            if password:
                kwargs["password"] = password
            if username:
                kwargs["username"] = username
            found = client_from_url(url, **kwargs)
            _clients[key] = found
        return found


def close_all() -> None:
    """Close every cached client (operator shutdown)."""
    with _lock:
        for c in _clients.values():
            c.close()
        _clients.clear()
