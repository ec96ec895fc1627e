"""Clients from URLs: ``redis://`` (one server) or ``redis+cluster://`` (a Redis Cluster).

- ``redis://``, ``rediss://``, ``unix://``: a ``redis.Redis`` (redis-py's own URL syntax).
- ``redis+cluster://[[user]:password@]host:port`` and ``rediss+cluster://...``: a
  ``redis.cluster.RedisCluster`` seeded with that node; it discovers the others (CLUSTER SLOTS)
  and follows the slot map as it changes. The cluster has database 0 only, so a path other
  than ``/`` or ``/0`` is refused.

The scheme carries the choice, so one setting (``QUEUEJOB_REDIS_URL``) tells the operator and,
through the Job's environment, every worker pod which kind of Redis to use.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster

#: URL schemes of a Redis Cluster, and the redis-py scheme each stands for.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: Every scheme :func:`client_from_url` accepts.
SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def client_from_url(url: str, **kwargs: Any) -> redis.Redis | RedisCluster:
    """A client for ``url`` (see the module doc); ``kwargs`` go to redis-py."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme)
    if scheme is None:
        return redis.Redis.from_url(url, **kwargs)
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a Redis Cluster has database 0 only, not {parts.path!r}")
    plain = urlunsplit((scheme, parts.netloc, "", parts.query, ""))
    return RedisCluster.from_url(plain, **kwargs)
