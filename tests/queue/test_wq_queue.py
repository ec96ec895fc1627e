"""LeaseQueue unit tests on a real redis-server (fixtures.redis), with a controllable clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from fixtures.redis import Backend
from localkube.process import free_port
from localkube.redis_server import RedisServer
from workqueue.baseline import DocsWorkQueue
from workqueue.config import QueueConfig
from workqueue.errors import (
    ItemError,
    QueueAuthError,
    QueueConfigError,
    QueueTypeError,
    QueueUnavailableError,
    StaleLeaseError,
)
from workqueue.ratelimit import SharedTokenBucket
from workqueue.redisqueue import LeaseQueue

pytestmark = pytest.mark.timeout(60)


def keys_everywhere(client: redis.Redis | RedisCluster) -> list[str]:
    """Every key (on a cluster: of every master), sorted."""
    if isinstance(client, RedisCluster):
        return sorted(client.keys("*", target_nodes=RedisCluster.PRIMARIES))
    return sorted(client.keys("*"))


class FakeClock:
    """A settable clock in seconds."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(redis_client: redis.Redis, clock: FakeClock) -> Iterator[LeaseQueue]:
    q = LeaseQueue(redis_client, "unit", clock=clock, rand=lambda: 0.0)
    q.configure(
        QueueConfig(
            lease_seconds=10, max_attempts=3, backoff_base=1, backoff_cap=4, backoff_jitter=0.5
        )
    )
    yield q


# -- seeding -------------------------------------------------------------------------------


def test_seed_is_idempotent_and_deduplicates(queue: LeaseQueue) -> None:
    assert queue.seed(["a", "b", "a", "c"]) == 3
    assert queue.seed(["c", "b", "d"]) == 1
    assert queue.stats().pending == 4
    assert queue.stats().total == 4
    [lease] = queue.lease("w")
    assert lease.item == "a"
    queue.complete(lease)
    # Re-seeding after a crash: a succeeded item is not added again, nor a pending one.
    assert queue.seed(["a", "b", "c", "d"]) == 0
    stats = queue.stats()
    assert (stats.pending, stats.succeeded, stats.total) == (3, 1, 4)


def test_seed_rejects_bad_items_before_writing(queue: LeaseQueue) -> None:
    with pytest.raises(ItemError, match=r"item #1 is of type int, expected str"):
        queue.seed(["ok", 7])  # type: ignore[list-item]
    with pytest.raises(ItemError, match=r"item #0 is empty"):
        queue.seed([""])
    with pytest.raises(ItemError, match=r"4097 bytes, more than max_item_bytes=4096"):
        queue.seed(["x" * 4097])
    with pytest.raises(ItemError, match="not a single string"):
        queue.seed("abc")
    assert queue.stats().total == 0


def test_item_size_limit_counts_utf8_bytes(redis_client: redis.Redis) -> None:
    q = LeaseQueue(redis_client, "small")
    q.configure(QueueConfig(max_item_bytes=4))
    assert q.seed(["éé"]) == 1  # 4 bytes
    with pytest.raises(ItemError, match="5 bytes"):
        q.seed(["éée"[:2] + "e"])


def test_config_validation_names_the_field() -> None:
    with pytest.raises(QueueConfigError, match="lease_seconds"):
        QueueConfig(lease_seconds=0)
    with pytest.raises(QueueConfigError, match="max_attempts"):
        QueueConfig(max_attempts=0)
    with pytest.raises(QueueConfigError, match="backoff_cap"):
        QueueConfig(backoff_base=5, backoff_cap=1)
    with pytest.raises(QueueConfigError, match="backoff_jitter"):
        QueueConfig(backoff_jitter=1.5)
    with pytest.raises(QueueConfigError, match="rate_burst is set but rate_qps"):
        QueueConfig(rate_burst=3)
    assert QueueConfig(rate_qps=2.5).rate_burst == 3


def test_config_is_stored_in_redis_for_workers(redis_client: redis.Redis) -> None:
    LeaseQueue(redis_client, "cfg").configure(QueueConfig(max_attempts=7, rate_qps=5))
    seen = LeaseQueue(redis_client, "cfg").config
    assert seen.max_attempts == 7
    assert seen.rate_qps == 5.0
    assert seen.rate_burst == 5


def test_queue_name_must_not_break_the_hash_tag(redis_client: redis.Redis) -> None:
    with pytest.raises(QueueConfigError, match="braces"):
        LeaseQueue(redis_client, "a}b")


# -- leases and acknowledgements ---------------------------------------------------------


def test_lease_records_worker_attempt_and_expiry(queue: LeaseQueue, clock: FakeClock) -> None:
    queue.seed(["a", "b", "c"])
    leases = queue.lease("w1", n=2)
    assert [lease.item for lease in leases] == ["a", "b"]
    assert all(lease.attempt == 1 and lease.worker_id == "w1" for lease in leases)
    assert all(lease.expires_at == clock.now + 10 for lease in leases)
    assert len({lease.token for lease in leases}) == 2
    flights = queue.in_flight()
    assert {(f.item, f.worker_id, f.attempt) for f in flights} == {("a", "w1", 1), ("b", "w1", 1)}
    stats = queue.stats()
    assert (stats.pending, stats.leased) == (1, 2)
    assert queue.lease("w2", n=5, lease_seconds=3)[0].expires_at == clock.now + 3
    assert queue.lease("w3") == []


def test_complete_and_lease_in_one_call(queue: LeaseQueue) -> None:
    queue.seed([f"i{i}" for i in range(5)])
    held = queue.lease("w", n=2)
    handoff = queue.complete_and_lease(held, "w", n=2)
    assert handoff.stale == {}
    assert [lease.item for lease in handoff.leases] == ["i2", "i3"]
    assert queue.stats().succeeded == 2
    assert queue.complete_many(handoff.leases) == {}
    assert queue.succeeded_items() == {"i0", "i1", "i2", "i3"}


def test_stale_holder_is_refused(queue: LeaseQueue, clock: FakeClock) -> None:
    queue.seed(["a"])
    [old] = queue.lease("w1")
    clock.advance(11)  # the lease expires; the next lease reaps and re-leases it
    [new] = queue.lease("w2")
    assert new.item == "a" and new.attempt == 2
    with pytest.raises(StaleLeaseError, match="re-leased to another holder") as info:
        queue.complete(old)
    assert info.value.item == "a"
    with pytest.raises(StaleLeaseError):
        queue.fail(old, "late")
    with pytest.raises(StaleLeaseError):
        queue.renew(old)
    with pytest.raises(StaleLeaseError):
        queue.release(old)
    queue.complete(new)
    with pytest.raises(StaleLeaseError, match="already completed"):
        queue.complete(old)
    assert queue.stats().succeeded == 1


def test_repeated_ack_with_same_token_is_accepted(queue: LeaseQueue) -> None:
    queue.seed(["a", "b"])
    a, b = queue.lease("w", n=2)
    queue.complete(a)
    queue.complete(a)  # e.g. retried after a lost reply
    assert queue.fail(b, "x").retry_at is not None
    assert queue.fail(b, "x").retry_at is None  # repeated: acknowledged, nothing changes
    stats = queue.stats()
    assert (stats.succeeded, stats.delayed, stats.retries) == (1, 1, 1)


def test_expired_but_unreaped_lease_can_still_complete(queue: LeaseQueue, clock: FakeClock) -> None:
    queue.seed(["a"])
    [lease] = queue.lease("w")
    clock.advance(30)
    queue.complete(lease)
    assert queue.stats().succeeded == 1
    assert queue.reap() == 0


def test_fail_backs_off_exponentially_with_cap_and_jitter(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    q = LeaseQueue(redis_client, "backoff", clock=clock, rand=lambda: 1.0)
    q.configure(QueueConfig(max_attempts=10, backoff_base=1, backoff_cap=4, backoff_jitter=0.5))
    q.seed(["x"])
    delays = []
    for _ in range(5):
        [lease] = q.lease("w", timeout=0)
        assert lease.item == "x"
        result = q.fail(lease, "boom")
        assert not result.dead and result.retry_at is not None
        delays.append(result.retry_at - clock.now)
        assert q.lease("w") == []  # not due yet
        assert q.stats().delayed == 1
        clock.advance(delays[-1])
    # base * 2**n capped at 4, reduced by jitter 0.5 * rand() = 50 %.
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert q.stats().retries == 5


def test_poison_item_is_dead_lettered_with_last_error(queue: LeaseQueue, clock: FakeClock) -> None:
    queue.seed(["poison", "good"])
    for attempt in range(1, 4):
        clock.advance(100)
        leases = {lease.item: lease for lease in queue.lease("w", n=2)}
        assert leases["poison"].attempt == attempt
        result = queue.fail(leases["poison"], f"exit 1 on attempt {attempt}")
        assert result.dead == (attempt == 3)
        if "good" in leases:
            queue.complete(leases["good"])
    [letter] = queue.dead_letters()
    assert letter.item == "poison"
    assert letter.error == "exit 1 on attempt 3"
    assert letter.attempts == 3
    stats = queue.stats()
    assert (stats.dead, stats.succeeded, stats.retries) == (1, 1, 2)
    assert queue.done()
    with pytest.raises(StaleLeaseError, match="dead-lettered"):
        queue.complete(leases["poison"])


def test_renew_extends_the_lease(queue: LeaseQueue, clock: FakeClock) -> None:
    queue.seed(["a"])
    [lease] = queue.lease("w")
    clock.advance(8)
    renewed = queue.renew(lease)
    assert renewed.expires_at == clock.now + 10
    clock.advance(8)  # past the first expiry, within the renewed one
    assert queue.reap() == 0
    assert queue.lease("other") == []
    assert queue.renew(renewed, lease_seconds=1).expires_at == clock.now + 1
    queue.complete(renewed)


def test_release_gives_back_without_counting_an_attempt(queue: LeaseQueue) -> None:
    queue.seed(["a", "b"])
    [a] = queue.lease("w")
    queue.release(a)
    [again] = queue.lease("w")
    assert again.item == "a" and again.attempt == 1
    with pytest.raises(StaleLeaseError):
        queue.complete(a)


def test_reap_requeues_expired_leases_and_dead_letters_exhausted(
    queue: LeaseQueue, clock: FakeClock
) -> None:
    queue.seed(["a", "b"])
    queue.lease("w", n=2)
    clock.advance(10)  # expiry is inclusive
    assert queue.reap() == 2
    stats = queue.stats()
    assert (stats.pending, stats.leased, stats.retries) == (2, 0, 2)
    for _ in range(2):
        queue.lease("w", n=2)
        clock.advance(11)
        assert queue.reap() == 2
    stats = queue.stats()
    assert (stats.pending, stats.dead) == (0, 2)
    assert {d.item for d in queue.dead_letters()} == {"a", "b"}
    assert all("lease expired" in d.error and d.attempts == 3 for d in queue.dead_letters())
    assert queue.done()


def test_concurrent_reapers_requeue_each_item_once(
    redis_backend: Backend, redis_client: redis.Redis, clock: FakeClock
) -> None:
    setup = LeaseQueue(redis_client, "reapers", clock=clock)
    setup.configure(QueueConfig(lease_seconds=1, max_attempts=5))
    setup.seed([f"i{i}" for i in range(300)])
    setup.lease("w", n=300)
    clock.advance(2)
    counts: list[int] = []

    def reaper() -> None:
        client = redis_backend.client()
        counts.append(LeaseQueue(client, "reapers", clock=clock).reap(limit=50))
        client.close()

    threads = [threading.Thread(target=reaper) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 300
    stats = setup.stats()
    assert (stats.pending, stats.leased, stats.retries) == (300, 0, 300)
    assert redis_client.llen(setup.queue_keys.key("pending")) == 300
    assert len(set(redis_client.lrange(setup.queue_keys.key("pending"), 0, -1))) == 300


def test_lease_waits_with_timeout(redis_client: redis.Redis) -> None:
    q = LeaseQueue(redis_client, "wait")
    q.configure(QueueConfig(backoff_base=0.2, backoff_cap=0.2, backoff_jitter=0))
    assert q.lease("w", timeout=0.05) == []
    q.seed(["a"])
    [lease] = q.lease("w")
    q.fail(lease, "again")
    assert q.lease("w") == []  # the retry is 0.2 s away
    [retry] = q.lease("w", timeout=5)
    assert retry.item == "a" and retry.attempt == 2


def test_stats_and_done(queue: LeaseQueue, clock: FakeClock) -> None:
    assert queue.done()
    queue.seed(["a", "b", "c", "d"])
    assert not queue.done()
    a, b, c, d = queue.lease("w", n=4)
    queue.complete(a)
    queue.fail(b, "e")
    stats = queue.stats()
    assert stats._asdict() == {
        "pending": 0,
        "delayed": 1,
        "leased": 2,
        "succeeded": 1,
        "dead": 0,
        "total": 4,
        "retries": 1,
    }
    queue.complete(c)
    queue.complete(d)
    assert not queue.done()  # b is delayed
    clock.advance(100)
    [b2] = queue.lease("w")
    assert not queue.done()  # b is leased
    queue.complete(b2)
    assert queue.done()
    assert queue.stats().succeeded == 4


def test_all_keys_share_the_hash_tag(queue: LeaseQueue, redis_client: redis.Redis) -> None:
    queue.configure(QueueConfig(rate_qps=100))
    queue.seed(["a", "b", "c"])
    a, b, _c = queue.lease("w", n=3)
    queue.complete(a)
    queue.fail(b, "x")
    present = keys_everywhere(redis_client)
    assert present, "the queue wrote no keys"
    assert all(key.startswith("wq:{unit}:") for key in present), present
    assert set(present) <= set(queue.keys())
    all_keys = queue.keys()
    assert len({key_slot(key.encode()) for key in all_keys}) == 1  # one Cluster slot
    assert queue.delete() == len(present)
    assert keys_everywhere(redis_client) == []


def test_wrong_type_key_is_reported_and_changes_nothing(
    queue: LeaseQueue, redis_client: redis.Redis
) -> None:
    queue.seed(["a", "b"])
    holders = queue.queue_keys.key("holders")
    redis_client.set(holders, "oops")
    with pytest.raises(QueueTypeError, match=r"wq:\{unit\}:holders is a string, expected a hash"):
        queue.lease("w")
    # Nothing was lost: both items are still pending.
    assert redis_client.lrange(queue.queue_keys.key("pending"), 0, -1) == ["a", "b"]
    redis_client.delete(holders)
    assert [lease.item for lease in queue.lease("w", n=2)] == ["a", "b"]
    redis_client.set(queue.queue_keys.key("dead"), "oops")
    with pytest.raises(QueueTypeError, match="dead"):
        queue.stats()


def test_auth_failure_is_a_typed_error(redis_server: RedisServer) -> None:
    client = redis.Redis(
        host=redis_server.host,
        port=redis_server.port,
        password="wrong-password",
        retry=Retry(NoBackoff(), 0),
    )
    with pytest.raises(QueueAuthError, match="refused authentication"):
        LeaseQueue(client, "auth").seed(["a"])
    anonymous = redis.Redis(
        host=redis_server.host, port=redis_server.port, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(QueueAuthError):
        LeaseQueue(anonymous, "auth").stats()


def test_unreachable_redis_is_a_typed_error() -> None:
    port = free_port()
    client = redis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(QueueUnavailableError, match=rf"127\.0\.0\.1:{port}/0 is unreachable"):
        LeaseQueue(client, "down").lease("w")


def test_outage_loses_no_item(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "redis", persist=True) as server:
        client = server.client(retry=Retry(NoBackoff(), 0), socket_timeout=2)
        q = LeaseQueue(client, "outage")
        q.configure(QueueConfig(lease_seconds=60))
        q.seed(["a", "b", "c"])
        a, b = q.lease("w", n=2)
        with server.outage(crash=True):
            with pytest.raises(QueueUnavailableError):
                q.complete(a)
            with pytest.raises(QueueUnavailableError):
                q.fail(b, "x")
            with pytest.raises(QueueUnavailableError):
                q.lease("w")
        # After the outage every item is where it was: the acks that failed changed nothing.
        stats = q.stats()
        assert (stats.pending, stats.leased, stats.succeeded) == (1, 2, 0)
        q.complete(a)
        q.complete(b)
        [c] = q.lease("w")
        q.complete(c)
        assert q.stats().succeeded == 3 and q.done()
        client.close()


def test_shared_rate_limit_caps_leases(redis_client: redis.Redis, clock: FakeClock) -> None:
    q = LeaseQueue(redis_client, "rated", clock=clock)
    q.configure(QueueConfig(rate_qps=2, rate_burst=3))
    q.seed([f"i{i}" for i in range(20)])
    assert len(q.lease("w1", n=10)) == 3  # the burst
    assert q.lease("w2", n=10) == []  # another worker shares the bucket
    clock.advance(1.0)
    assert len(q.lease("w2", n=10)) == 2
    clock.advance(10.0)
    assert len(q.lease("w1", n=10)) == 3  # refills up to the burst only
    granted = 0
    for _ in range(20):
        clock.advance(0.25)
        granted += len(q.lease("w1", n=10))
    assert granted == 10  # 5 s at 2/s


def test_shared_token_bucket(redis_client: redis.Redis, clock: FakeClock) -> None:
    bucket = SharedTokenBucket(redis_client, "bucket:{x}", qps=4, burst=2, clock=clock)
    other = SharedTokenBucket(redis_client, "bucket:{x}", qps=4, burst=2, clock=clock)
    assert bucket.try_take(5) == (2, 0.25)
    assert other.try_take(1)[0] == 0
    clock.advance(0.5)
    assert other.try_take(3)[0] == 2


def test_docs_baseline_keeps_crashed_items_forever(redis_server: RedisServer) -> None:
    """The flaw ours fixes: a crashed worker's item never leaves the processing list.

    On one server only: the docs' algorithm uses keys of different slots (RPOPLPUSH between
    them), which a Redis Cluster refuses."""
    redis_client = redis_server.client()
    docs = DocsWorkQueue(redis_client, "docs")
    docs.seed(["a", "b"])
    crashed = docs.lease(lease_secs=1, block=False)  # this worker "crashes"
    item = docs.lease(lease_secs=1, block=False)
    assert {crashed, item} == {"a", "b"}
    assert item is not None
    docs.complete(item)
    assert not docs.empty()
    assert docs.lease(block=False) is None  # and nobody can ever get "a" back
    redis_client.flushdb()
    redis_client.close()


def test_short_lived_queue_objects_do_not_leak_connections(redis_client: redis.Redis) -> None:
    for i in range(60):
        q = LeaseQueue(redis_client, "churn")
        q.seed([f"i{i}"])
        [lease] = q.lease("w")
        q.complete(lease)
    with LeaseQueue(redis_client, "churn") as q:
        assert q.stats().succeeded == 60
    # Each LeaseQueue gave its dedicated connection back to the pool when collected/closed.
    if isinstance(redis_client, RedisCluster):
        node = redis_client.get_node_from_key(q.keys()[0])
        assert len(redis_client.client_list(target_nodes=node)) <= 5
    else:
        assert len(redis_client.client_list()) <= 5
