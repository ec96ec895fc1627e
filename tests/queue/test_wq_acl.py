"""Per-queue ACL users (``workqueue.acl``) on a real redis-server and a real Redis Cluster.

- the user runs the whole worker path (lease, renew, complete, fail, release, complete_and_lease,
  batches, reap, stats, WAIT) on its own queue, through the Lua scripts;
- it gets NOPERM for another queue's keys (directly or from a script: Redis checks the keys a
  script touches, declared or not), KEYS/SCAN, FLUSHALL, CONFIG, ACL, SCRIPT FLUSH, CLIENT LIST and
  SUBSCRIBE to another queue's channel; WRONGPASS with a wrong password;
- applying twice is idempotent, removing deletes it on every node;
- on a cluster the user exists on every master and replica; a node restarted without an ACL file
  lacks it (``missing_nodes``) until it is applied again, then a worker runs there again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from fixtures.redis import Backend
from localkube.redis_cluster import LocalRedisCluster
from workqueue import acl
from workqueue.config import QueueConfig
from workqueue.errors import QueueAuthError, QueueUnavailableError
from workqueue.redisqueue import LeaseQueue

pytestmark = pytest.mark.timeout(120)

MINE = "acl-mine"
THEIRS = "acl-theirs"
#: What Redis answers to a refused command (redis-py strips the NOPERM/WRONGPASS code of some).
REFUSALS = (
    "NOPERM",
    "WRONGPASS",
    "no permissions",
    "invalid username-password",
    "can't access",  # a script's command on a key outside the pattern
)


@pytest.fixture
def restricted(
    redis_backend: Backend, redis_client: redis.Redis | RedisCluster
) -> Iterator[tuple[redis.Redis | RedisCluster, str]]:
    """A client logged in as ``MINE``'s ACL user (the admin client seeds both queues)."""
    password = acl.new_password()
    acl.apply_user(redis_client, MINE, password)
    for name in (MINE, THEIRS):
        queue = LeaseQueue(redis_client, name)
        queue.configure(QueueConfig(lease_seconds=30, max_attempts=2, backoff_base=0.01))
        queue.seed([f"{name}-a", f"{name}-b", f"{name}-c", f"{name}-d", f"{name}-e"])
    client = redis_backend.client(username=acl.username(MINE), password=password)
    try:
        yield client, password
    finally:
        client.close()
        acl.remove_user(redis_client, MINE)


def refused(call: Any) -> str:
    """The error text of ``call()``, which must be refused by Redis."""
    with pytest.raises(
        (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, QueueAuthError)
    ) as info:
        call()
    return str(info.value)


def test_rules_limit_keys_channels_and_commands() -> None:
    rules = acl.rules("qj:ns:name:1234abcd", "pw")
    assert rules[:3] == ["reset", "on", ">pw"]
    assert "~wq:{qj:ns:name:1234abcd}:*" in rules and "&wq:{qj:ns:name:1234abcd}:*" in rules
    assert "-@all" in rules and "+evalsha" in rules
    for forbidden in ("+flushall", "+keys", "+scan", "+config", "+acl", "+script|flush", "+@all"):
        assert forbidden not in rules
    # Glob characters of a queue name never widen the pattern.
    assert acl.key_pattern("a*b?[c]") == "wq:\\{a\\*b\\?\\[c\\]\\}:*".replace("\\{", "{").replace(
        "\\}", "}"
    )
    with pytest.raises(ValueError):
        acl.rules("q", "")


def test_user_runs_the_whole_worker_path_on_its_own_queue(
    restricted: tuple[redis.Redis | RedisCluster, str], redis_client: redis.Redis | RedisCluster
) -> None:
    client, _ = restricted
    assert client.execute_command("ACL", "WHOAMI") == acl.username(MINE)
    queue = LeaseQueue(client, MINE)
    assert queue.reload_config().max_attempts == 2
    [first] = queue.lease("w1", lease_seconds=30)
    queue.renew(first)
    queue.complete(first)
    batch = queue.lease("w1", n=2)
    assert len(batch) == 2
    handoff = queue.complete_and_lease(batch, "w1", n=1)
    assert not handoff.stale and len(handoff.leases) == 1
    result = queue.fail(handoff.leases[0], "boom")
    assert not result.dead
    [last] = queue.lease("w1")
    queue.release(last)
    while leases := queue.lease("w1", n=4, timeout=2.0):
        assert not queue.complete_many(leases)
    queue.reap()
    stats = queue.stats()
    assert stats.succeeded == 5 and stats.done, stats
    assert queue.done()
    queue.close()
    # The other queue is untouched.
    assert LeaseQueue(redis_client, THEIRS).stats().pending == 5


@contextlib.contextmanager
def cluster_user(
    cluster: LocalRedisCluster, queue: str, items: list[str]
) -> Iterator[tuple[RedisCluster, RedisCluster, str]]:
    """``queue`` seeded with ``items`` and its user created: (admin client, client logged in
    as the user, its password); the user and the data are removed afterwards."""
    admin = cluster.client()
    password = acl.new_password()
    acl.apply_user(admin, queue, password)
    LeaseQueue(admin, queue).seed(items)
    client = cluster.client(username=acl.username(queue), password=password)
    try:
        yield admin, client, password
    finally:
        client.close()
        acl.remove_user(admin, queue)
        admin.flushdb()
        admin.close()


def test_user_runs_the_worker_path_with_wait_replicas(redis_cluster: LocalRedisCluster) -> None:
    with cluster_user(redis_cluster, "acl-wait", ["w"]) as (_, client, _):
        queue = LeaseQueue(client, "acl-wait", wait_replicas=1, wait_timeout=2.0)
        [lease] = queue.lease("w1")
        queue.complete(lease)
        assert queue.done()
        queue.close()


def test_live_addresses_of_a_cluster_nodes_reply() -> None:
    reply = (
        "a1 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-5460\n"
        "b2 10.0.0.2:6379@16379,redis-2 slave a1 0 0 1 connected\n"
        "c3 10.0.0.3:6379@16379 master,fail - 0 0 2 disconnected\n"
        "d4 :0@0 master,noaddr - 0 0 0 disconnected\n"
        "e5 10.0.0.5:6379@16379 handshake - 0 0 0 connected\n"
        "f6 10.0.0.6:6379@16379 master,fail? - 0 0 3 connected 5461-10922\n"
    )
    assert acl.live_addresses(reply) == {"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.6:6379"}


def test_user_reaches_a_replica_the_client_did_not_know() -> None:
    """The operator's client may not know every node: redis-py's list comes from CLUSTER SLOTS,
    which leaves out a replica that has replicated nothing yet (a new cluster), and is read only
    at start and after errors. The user must still land on that replica: once it is promoted,
    the workers log in there."""
    with LocalRedisCluster() as cluster:
        admin = cluster.client()
        manager = admin.nodes_manager
        replica = next(n for n in admin.get_nodes() if n.server_type == "replica")
        with manager._lock:  # the client's view as CLUSTER SLOTS can leave it
            del manager.nodes_cache[replica.name]
        assert replica.name not in {n.name for n in admin.get_nodes()}
        password = acl.new_password()
        acl.apply_user(admin, "acl-late", password)
        fresh = cluster.client()
        try:
            assert acl.missing_nodes(fresh, "acl-late") == []
            with acl.nodes(admin) as targets:  # the one it did not know, through a direct client
                assert sorted(acl.node_name(n) for n in targets) == sorted(
                    n.name for n in fresh.get_nodes()
                )
                assert any(isinstance(n, redis.Redis) for n in targets)
        finally:
            fresh.close()
            admin.close()


def test_cluster_calls_while_the_user_is_gone_are_unavailable_not_a_crash(
    redis_cluster: LocalRedisCluster,
) -> None:
    """While the cluster does not know the queue's user (a node restarted without its ACL file,
    until the operator puts the user back), the worker path's calls cannot even read the slot
    map. They raise ``QueueUnavailableError``, which workers retry, not redis-py's
    ``RedisClusterException`` (no ``RedisError``); once the user is back the same queue object
    works again."""
    with cluster_user(redis_cluster, "acl-gone", ["a", "b"]) as (admin, client, password):
        queue = LeaseQueue(client, "acl-gone")
        [first] = queue.lease("w1")
        acl.remove_user(admin, "acl-gone")  # Redis also closes the user's connections
        errors = []
        for _ in range(3):  # the broken connection, then slot-map reads refused by every node
            with pytest.raises(QueueUnavailableError) as caught:
                queue.complete(first)
            errors.append(str(caught.value))
        assert any("RedisClusterException" in e or "cannot be connected" in e for e in errors)
        acl.apply_user(admin, "acl-gone", password)
        queue.complete(first)
        [second] = queue.lease("w1")
        queue.complete(second)
        assert queue.done()
        queue.close()


def test_user_is_refused_everything_outside_its_queue(
    redis_backend: Backend,
    restricted: tuple[redis.Redis | RedisCluster, str],
    redis_client: redis.Redis | RedisCluster,
) -> None:
    client, password = restricted
    theirs = LeaseQueue(client, THEIRS)
    pending = f"wq:{{{THEIRS}}}:pending"
    attempts = {
        "lease another queue": lambda: theirs.lease("w1"),
        "stats of another queue": lambda: theirs.stats(),
        "LLEN another queue": lambda: client.llen(pending),
        "DEL another queue": lambda: client.delete(pending),
        "KEYS": lambda: client.keys("*"),
        "SCAN": lambda: client.execute_command("SCAN", 0),
        "FLUSHALL": lambda: client.execute_command("FLUSHALL"),
        "FLUSHDB": lambda: client.execute_command("FLUSHDB"),
        "CONFIG GET": lambda: client.execute_command("CONFIG", "GET", "requirepass"),
        "ACL LIST": lambda: client.execute_command("ACL", "LIST"),
        "ACL SETUSER": lambda: client.execute_command(
            "ACL", "SETUSER", acl.username(MINE), "+@all"
        ),
        "SCRIPT FLUSH": lambda: client.execute_command("SCRIPT", "FLUSH"),
        "CLIENT LIST": lambda: client.execute_command("CLIENT", "LIST"),
        "EVAL naming another queue's key": lambda: client.eval(
            "return redis.call('LLEN', KEYS[1])", 1, pending
        ),
        "EVAL with an undeclared key": lambda: client.eval(
            f"return redis.call('LLEN', '{pending}')", 1, f"wq:{{{MINE}}}:pending"
        ),
        "AUTH default with the user's password": lambda: redis_backend.client(
            password=password
        ).ping(),
        "wrong password": lambda: redis_backend.client(
            username=acl.username(MINE), password=password + "x"
        ).ping(),
    }
    answers = {what: refused(call) for what, call in attempts.items()}
    for what, answer in answers.items():
        assert any(code in answer for code in REFUSALS), f"{what}: {answer}"
    assert "WRONGPASS" in answers["wrong password"] or "invalid" in answers["wrong password"]
    assert LeaseQueue(redis_client, THEIRS).stats().pending == 5


def test_subscribe_is_limited_to_the_queue_channels(
    redis_backend: Backend, restricted: tuple[redis.Redis | RedisCluster, str]
) -> None:
    _, password = restricted
    server = redis_backend.server or redis_backend.cluster.servers[0]  # type: ignore[union-attr]
    kwargs = {"username": acl.username(MINE), "password": password}
    conn = server.client(**kwargs)
    try:
        pubsub = conn.pubsub()
        pubsub.subscribe(f"wq:{{{MINE}}}:events")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        pubsub.close()
        for command in ("SUBSCRIBE", "PSUBSCRIBE", "PUBLISH"):
            args = (f"wq:{{{THEIRS}}}:events",) + (("x",) if command == "PUBLISH" else ())
            answer = refused(lambda: conn.execute_command(command, *args))  # noqa: B023
            assert "NOPERM" in answer or "no permissions" in answer, (command, answer)
            conn.close()
            conn = server.client(**kwargs)
    finally:
        conn.close()


def test_apply_is_idempotent_and_remove_deletes_everywhere(
    redis_client: redis.Redis | RedisCluster,
) -> None:
    acl.apply_user(redis_client, "acl-idem", "one")
    acl.apply_user(redis_client, "acl-idem", "one")
    assert acl.missing_nodes(redis_client, "acl-idem") == []
    with acl.nodes(redis_client) as targets:
        expected = len(targets)
    assert acl.remove_user(redis_client, "acl-idem") == expected
    assert len(acl.missing_nodes(redis_client, "acl-idem")) == expected
    assert acl.remove_user(redis_client, "acl-idem") == 0


def test_cluster_node_restarted_without_acl_file_gets_the_user_again() -> None:
    with LocalRedisCluster() as cluster:
        admin = cluster.client()
        password = acl.new_password()
        acl.apply_user(admin, MINE, password)
        # Every master and replica knows the user: ask each node directly.
        for server in cluster.servers:
            node = cluster.node_client(server)
            assert node.execute_command("ACL", "GETUSER", acl.username(MINE)) is not None
            node.close()
        user = {"username": acl.username(MINE), "password": password}
        victim = cluster.master_of(f"wq:{{{MINE}}}:config")
        victim.restart()  # no ACL file: the node comes back without the user
        cluster.wait_healthy()
        refusal = refused(lambda: victim.client(**user).ping())
        assert "WRONGPASS" in refusal or "invalid" in refusal, refusal
        missing = acl.missing_nodes(admin, MINE)
        assert missing == [f"127.0.0.1:{victim.port}"], missing
        acl.apply_user(admin, MINE, password)  # what the operator's resync does
        assert acl.missing_nodes(admin, MINE) == []
        assert victim.client(**user).ping()
        # A worker runs its queue on the cluster as that user again.
        LeaseQueue(admin, MINE).seed(["x", "y"])
        worker_client = cluster.client(**user)
        worker = LeaseQueue(worker_client, MINE)
        leases = worker.lease("w1", n=2, timeout=10.0)
        assert sorted(lease.item for lease in leases) == ["x", "y"]
        assert not worker.complete_many(leases)
        assert worker.done()
        worker.close()
        worker_client.close()
        admin.close()
