"""The worker calls as a Redis function library (``scripts.library``), on a real redis-server and
a real Redis Cluster.

- the functions give exactly the scripts' results (the same calls, with one clock, on two queues);
- the worker calls run as ``FCALL``, not ``EVALSHA``, once the library is loaded;
- a library that is gone (FUNCTION FLUSH: a restart without persistence) is loaded again by a
  user allowed to, and the call that met the gap still runs once;
- a queue's ACL user may FCALL but never load, replace or delete a library: it falls back to the
  scripts while the library is missing, and uses the functions once the operator's side loaded
  them (``acl.apply_user``); a user made without FCALL permission (an older operator) still works;
- a function, like a script, cannot touch another queue's keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from fixtures.redis import Backend
from workqueue import acl
from workqueue.config import QueueConfig
from workqueue.models import Lease
from workqueue.redisqueue import LeaseQueue
from workqueue.scripts import FUNCTIONS, library

pytestmark = pytest.mark.timeout(120)

Client = redis.Redis | RedisCluster


def _masters(client: Client) -> list[Any]:
    if isinstance(client, RedisCluster):
        return list(client.get_primaries())  # type: ignore[no-untyped-call]
    return [None]


def calls(client: Client, command: str) -> int:
    """Calls of ``command`` (``fcall``, ``evalsha``) that ran without an error, on all masters
    since the last reset."""
    total = 0
    for node in _masters(client):
        if node is None:
            info = client.info("commandstats")
        else:
            info = client.info("commandstats", target_nodes=node)  # type: ignore[call-arg]
        stat = info.get(f"cmdstat_{command}", {})
        total += int(stat.get("calls", 0)) - int(stat.get("failed_calls", 0))
    return total


def on_masters(client: Client, *args: Any) -> None:
    for node in _masters(client):
        if node is None:
            client.execute_command(*args)  # type: ignore[no-untyped-call]
        else:
            client.execute_command(*args, target_nodes=node)  # type: ignore[no-untyped-call]


def loaded(client: Client) -> int:
    """The number of masters holding the library."""
    count = 0
    for node in _masters(client):
        if node is None:
            listed = client.function_list(library=library().name)
        else:
            listed = client.execute_command(  # type: ignore[no-untyped-call]
                "FUNCTION", "LIST", "LIBRARYNAME", library().name, target_nodes=node
            )
        count += bool(listed)
    return count


@pytest.fixture
def flushed(redis_client: Client) -> Iterator[Client]:
    """``redis_client`` with no function library on any node (and stats reset)."""
    on_masters(redis_client, "FUNCTION", "FLUSH", "SYNC")
    on_masters(redis_client, "CONFIG", "RESETSTAT")
    yield redis_client
    on_masters(redis_client, "FUNCTION", "FLUSH", "SYNC")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def drive(queue: LeaseQueue, clock: Clock) -> list[Any]:
    """A fixed sequence of every worker call; what each returned, minus the tokens' nonces."""
    seen: list[Any] = []

    def shape(leases: list[Lease]) -> list[tuple[str, int, float]]:
        return [(lease.item, lease.attempt, lease.expires_at) for lease in leases]

    leases = queue.lease("w1", 3)
    seen.append(shape(leases))
    clock.now += 1
    seen.append(queue.renew(leases[0], 50).expires_at)
    queue.fail(leases[1], "boom")
    queue.release(leases[2])
    handoff = queue.complete_and_lease([leases[0]], "w2", 1)
    seen.append((shape(handoff.leases), handoff.stale))
    clock.now += 40  # the failed item's retry is due; w2's lease expires
    more = queue.lease("w3", 10)
    seen.append(shape(more))
    seen.append(queue.complete_many(more))
    clock.now += 100
    last = queue.lease("w4", 10)
    seen.append(shape(last))
    queue.complete_many(last)
    stats = queue.stats()
    seen.append((stats.pending, stats.succeeded, stats.dead, stats.retries))
    seen.append((queue.durations().counts, queue.durations().sum_seconds))
    return seen


def test_the_functions_give_the_scripts_results(flushed: Client) -> None:
    results = []
    for functions in (False, True):
        clock = Clock()
        queue = LeaseQueue(
            flushed, f"fn-same-{functions}", clock=clock, rand=lambda: 0.5, functions=functions
        )
        queue.configure(QueueConfig(lease_seconds=30, max_attempts=3, backoff_base=5))
        queue.seed(["a", "b", "c", "d", "e"])
        results.append(drive(queue, clock))
    assert results[0] == results[1]
    assert results[1][-2][1] == 5  # everything succeeded in the end (not a vacuous match)
    assert sum(results[1][-1][0]) == 5


def test_worker_calls_run_as_fcall_once_loaded(flushed: Client) -> None:
    queue = LeaseQueue(flushed, "fn-fcall")
    queue.seed([str(i) for i in range(20)])
    leases = queue.lease("w", 1)  # loads the library (this client may), then runs as FCALL
    assert loaded(flushed) == 1  # on the queue's node only
    for _ in range(10):
        leases = queue.complete_and_lease(leases, "w", 1).leases
    assert calls(flushed, "fcall") == 11
    evalsha_before = calls(flushed, "evalsha")
    queue.complete(leases[0])
    assert calls(flushed, "fcall") == 12 and calls(flushed, "evalsha") == evalsha_before
    assert queue.stats().succeeded == 11


def test_a_flushed_library_is_loaded_again_and_the_call_runs_once(flushed: Client) -> None:
    queue = LeaseQueue(flushed, "fn-reload")
    queue.seed(["a", "b", "c"])
    first = queue.lease("w", 1)
    on_masters(flushed, "FUNCTION", "FLUSH", "SYNC")
    assert loaded(flushed) == 0
    handoff = queue.complete_and_lease(first, "w", 1)
    assert loaded(flushed) == 1
    assert [lease.item for lease in handoff.leases] == ["b"]
    stats = queue.stats()
    assert (stats.succeeded, stats.leased, stats.pending) == (1, 1, 1)


def test_a_tenant_falls_back_to_scripts_and_may_never_load(
    redis_backend: Backend, flushed: Client
) -> None:
    name = "fn-tenant"
    password = acl.new_password()
    acl.apply_user(flushed, name, password)  # loads the library; flush it again
    on_masters(flushed, "FUNCTION", "FLUSH", "SYNC")
    admin = LeaseQueue(flushed, name)
    admin.seed([str(i) for i in range(10)])
    tenant_client = redis_backend.client(username=acl.username(name), password=password)
    try:
        tenant = LeaseQueue(tenant_client, name)
        leases = tenant.lease("w", 1)
        for _ in range(3):
            leases = tenant.complete_and_lease(leases, "w", 1).leases
        assert admin.stats().succeeded == 3
        assert loaded(flushed) == 0  # the tenant's try to load was refused
        for args in (
            ("FUNCTION", "LOAD", library().code),
            ("FUNCTION", "FLUSH"),
            ("FUNCTION", "DELETE", library().name),
            ("FUNCTION", "RESTORE", b"x"),
        ):
            with pytest.raises(redis.exceptions.RedisError) as info:
                tenant_client.execute_command(*args)  # type: ignore[no-untyped-call]
            assert "NOPERM" in str(info.value) or "no permissions" in str(info.value)
        # The operator's side loads it; a new tenant object uses the functions at once.
        acl.load_library(flushed)
        assert loaded(flushed) == len(_masters(flushed))
        on_masters(flushed, "CONFIG", "RESETSTAT")
        tenant = LeaseQueue(tenant_client, name)
        leases = tenant.complete_and_lease(leases, "w", 1).leases
        assert calls(flushed, "fcall") == 1
        # A user without FCALL (made by an older operator) still works, through the scripts.
        on_masters(flushed, "ACL", "SETUSER", acl.username(name), "-fcall")
        if isinstance(flushed, RedisCluster):
            for node in flushed.get_replicas():  # type: ignore[no-untyped-call]
                flushed.execute_command(  # type: ignore[no-untyped-call]
                    "ACL", "SETUSER", acl.username(name), "-fcall", target_nodes=node
                )
        tenant = LeaseQueue(tenant_client, name)
        tenant.complete_and_lease(leases, "w", 1)
        assert admin.stats().succeeded == 5
    finally:
        tenant_client.close()
        acl.remove_user(flushed, name)


def test_a_function_cannot_touch_another_queues_keys(
    redis_backend: Backend, redis_client: Client
) -> None:
    mine, theirs = "fn-mine", "fn-theirs"
    password = acl.new_password()
    acl.apply_user(redis_client, mine, password)
    LeaseQueue(redis_client, theirs).seed(["x"])
    keys = LeaseQueue(redis_client, theirs).queue_keys.ordered
    tenant_client = redis_backend.client(username=acl.username(mine), password=password)
    try:
        for script in FUNCTIONS:
            with pytest.raises(redis.exceptions.RedisError) as info:
                tenant_client.execute_command(  # type: ignore[no-untyped-call]
                    "FCALL", library().function(script), len(keys), *keys, "", "w", 1, "", "n"
                )
            assert "NOPERM" in str(info.value) or "no permissions" in str(info.value)
        assert LeaseQueue(redis_client, theirs).stats().pending == 1
    finally:
        tenant_client.close()
        acl.remove_user(redis_client, mine)
