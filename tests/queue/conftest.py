"""The queue's tests run on one redis-server and on a Redis Cluster (3 masters + 3 replicas).

``redis_backend`` is parametrized ``server`` / ``cluster``; ``redis_client`` (overriding the one
of ``fixtures.redis``) is a client of that backend: a ``redis.Redis`` or a
``redis.cluster.RedisCluster``, emptied after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from fixtures.redis import Backend
from localkube.redis_server import RedisServer


@pytest.fixture(params=["server", "cluster"])
def redis_backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "cluster":
        return Backend("cluster", cluster=request.getfixturevalue("redis_cluster"))
    server: RedisServer = request.getfixturevalue("redis_server")
    server.start()  # no-op unless a test stopped the shared server
    return Backend("server", server=server)


@pytest.fixture
def redis_client(redis_backend: Backend) -> Iterator[redis.Redis | RedisCluster]:
    client = redis_backend.client()
    try:
        yield client
    finally:
        try:
            client.flushdb()
        finally:
            client.close()
