"""The RedisServer launcher: loopback, password, restart on the same port, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from localkube.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)


def test_fixture_server_requires_password(redis_server: RedisServer) -> None:
    assert redis_server.host == "127.0.0.1"
    assert redis_server.password
    assert redis_server.url == (f"redis://:{redis_server.password}@127.0.0.1:{redis_server.port}/0")
    anonymous = redis.Redis(host="127.0.0.1", port=redis_server.port, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    assert redis.Redis.from_url(redis_server.url).ping()


def test_redis_client_fixture_is_usable(redis_client: redis.Redis) -> None:
    redis_client.set("k", "v")
    assert redis_client.get("k") == "v"


def test_restart_keeps_port_and_password_and_persisted_data(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "data", persist=True) as server:
        port, password = server.port, server.password
        client = server.client()
        client.rpush("l", "a", "b")
        server.kill()
        assert not server.running
        server.start()
        assert (server.port, server.password) == (port, password)
        assert client.lrange("l", 0, -1) == ["a", "b"]
        server.restart()
        assert server.port == port
        assert client.lrange("l", 0, -1) == ["a", "b"]
        client.close()
    assert not server.running


def test_outage_block_stops_and_starts() -> None:
    with RedisServer() as server:
        client = server.client(retry=Retry(NoBackoff(), 0), socket_timeout=1.0)
        with server.outage(), pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
        assert client.ping()
        client.close()
