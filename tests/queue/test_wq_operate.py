"""Operating a live queue: redrive, add, leases and dead-letter listings (real Redis: one
server and a Redis Cluster, see conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from workqueue.config import QueueConfig
from workqueue.errors import ItemError
from workqueue.models import Lease
from workqueue.redisqueue import MAX_PAGE, LeaseQueue

pytestmark = pytest.mark.timeout(120)


class Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(redis_client: redis.Redis, clock: Clock) -> Iterator[LeaseQueue]:
    q = LeaseQueue(redis_client, "operate", clock=clock, rand=lambda: 0.0)
    q.configure(
        QueueConfig(lease_seconds=30, max_attempts=2, backoff_base=0.001, backoff_cap=0.001)
    )
    yield q


def kill(queue: LeaseQueue, item_prefix: str = "bad") -> list[str]:
    """Lease and fail every item until the ones starting with ``item_prefix`` are dead; the
    others are completed. Returns the first 100 dead items."""
    while not queue.done():
        if isinstance(queue.clock, Clock):
            queue.clock.now += 1  # retries fall due
        leases = queue.lease("killer", n=1000, timeout=0.01)
        for lease in leases:
            if lease.item.startswith(item_prefix):
                queue.fail(lease, f"boom {lease.item} attempt {lease.attempt}")
            else:
                queue.complete(lease)
    return sorted(d.item for d in queue.dead_letters(100))


def test_redrive_listed_items_resets_attempts_and_keeps_counts(queue: LeaseQueue) -> None:
    queue.seed(["ok-1", "bad-1", "bad-2", "bad-3"])
    assert kill(queue) == ["bad-1", "bad-2", "bad-3"]
    before = queue.stats()
    assert (before.dead, before.succeeded, before.total) == (3, 1, 4)

    result = queue.redrive(["bad-2", "bad-1", "bad-2", "ok-1", "nope"])
    assert result.redriven == 2
    assert result.dead_left == 1
    assert result.skipped == {"ok-1": "succeeded", "nope": "not an item of this queue"}
    after = queue.stats()
    assert (after.pending, after.dead, after.succeeded, after.total) == (2, 1, 1, 4)
    # Back at the tail, in the listed order, with the full attempts again.
    leases = queue.lease("w", n=5)
    assert [(lease.item, lease.attempt) for lease in leases] == [("bad-2", 1), ("bad-1", 1)]
    # The error is gone; a second redrive of the same items finds them leased.
    assert queue.redrive(["bad-1"]).skipped == {"bad-1": "leased"}
    for lease in leases:
        queue.complete(lease)
    final = queue.stats()
    assert (final.succeeded, final.dead, final.total, final.done) == (3, 1, 4, True)


def test_redrive_all_moves_every_dead_letter_once(queue: LeaseQueue) -> None:
    items = [f"bad-{i:04d}" for i in range(2 * MAX_PAGE + 7)]
    queue.seed(items)
    assert len(kill(queue)) == 100  # dead_letters(100) shows the first 100
    assert queue.stats().dead == len(items)
    result = queue.redrive()
    assert (result.redriven, result.dead_left, result.skipped) == (len(items), 0, {})
    stats = queue.stats()
    assert (stats.pending, stats.dead, stats.total) == (len(items), 0, len(items))
    pending: list[str] = []
    while leases := queue.lease("w", n=1000):
        pending += [lease.item for lease in leases]
        assert {lease.attempt for lease in leases} == {1}
    assert sorted(pending) == items  # each item exactly once
    assert queue.redrive() == (0, 0, {})


def test_concurrent_redrives_move_each_item_once(redis_client: redis.Redis) -> None:
    q = LeaseQueue(redis_client, "redrive-race")
    q.configure(QueueConfig(lease_seconds=30, max_attempts=1, backoff_base=0.001))
    items = [f"bad-{i}" for i in range(300)]
    q.seed(items)
    kill(q)
    assert q.stats().dead == 300
    results: list[int] = []
    lock = threading.Lock()

    def redrive(subset: list[str] | None) -> None:
        n = LeaseQueue(redis_client, "redrive-race").redrive(subset).redriven
        with lock:
            results.append(n)

    threads = [threading.Thread(target=redrive, args=(None,)) for _ in range(3)]
    threads += [threading.Thread(target=redrive, args=(items[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 300
    stats = q.stats()
    assert (stats.pending, stats.dead, stats.total) == (300, 0, 300)


def test_add_to_a_live_queue_deduplicates(queue: LeaseQueue) -> None:
    queue.seed(["a", "b"])
    [lease] = queue.lease("w")
    assert queue.add(["c", "a", "c", "d"]) == (2, 1)
    queue.complete(lease)
    # Already succeeded, already pending, already added: nothing is added twice.
    assert queue.add(["a", "b", "c", "e"]) == (1, 3)
    stats = queue.stats()
    assert (stats.total, stats.pending, stats.succeeded) == (5, 4, 1)
    with pytest.raises(ItemError, match="item #1 is empty"):
        queue.add(["f", ""])
    assert queue.stats().total == 5  # a bad item writes nothing


def test_add_while_workers_lease_loses_and_duplicates_nothing(redis_client: redis.Redis) -> None:
    q = LeaseQueue(redis_client, "add-race")
    q.configure(QueueConfig(lease_seconds=30, max_attempts=3))
    q.seed([f"s-{i}" for i in range(50)])
    done: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(wid: str) -> None:
        wq = LeaseQueue(redis_client, "add-race")
        while not stop.is_set():
            for lease in wq.lease(wid, n=5):
                wq.complete(lease)
                with lock:
                    done.append(lease.item)

    workers = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for t in workers:
        t.start()
    added = 0
    for chunk in range(10):
        added += q.add([f"a-{chunk}-{i}" for i in range(20)] + ["s-1", "a-0-0"]).added
    while not q.done():
        stop.wait(0.05)
    stop.set()
    for t in workers:
        t.join()
    assert added == 200
    assert sorted(done) == sorted(
        [f"s-{i}" for i in range(50)] + [f"a-{c}-{i}" for c in range(10) for i in range(20)]
    )
    assert q.stats().total == 250


def test_leases_list_holder_attempt_and_age(queue: LeaseQueue, clock: Clock) -> None:
    queue.seed([f"i-{n}" for n in range(30)])
    first = queue.lease("pod-a", n=10)
    clock.now += 7
    second = queue.lease("pod-b:1", n=5)
    clock.now += 3
    seen = {}
    cursor: int | None = 0
    pages = 0
    while cursor is not None:
        page = queue.leases(limit=4, cursor=cursor)
        assert page.now == pytest.approx(clock.now)
        for info in page.leases:
            seen[info.item] = info
        cursor = page.cursor
        pages += 1
    assert len(seen) == 15
    for lease in first:
        info = seen[lease.item]
        assert (info.worker_id, info.attempt) == ("pod-a", 1)
        assert info.age(clock.now) == pytest.approx(10, abs=0.01)
        assert info.expires_at == pytest.approx(5_030)
    for lease in second:
        info = seen[lease.item]
        assert info.worker_id == "pod-b:1"  # a worker id may contain ':'
        assert info.age(clock.now) == pytest.approx(3, abs=0.01)
    # A renewal moves the expiry, not the lease time.
    renewed = queue.renew(first[0])
    info = next(i for i in queue.all_leases() if i.item == first[0].item)
    assert info.expires_at == pytest.approx(renewed.expires_at)
    assert info.leased_at == pytest.approx(5_000)
    # The token still acknowledges (the lease time is part of it).
    queue.complete(first[0])
    assert len(queue.all_leases()) == 14
    assert len(queue.all_leases(limit=3)) == 3
    with pytest.raises(ValueError):
        queue.leases(limit=0)


def test_dead_letter_pages(queue: LeaseQueue) -> None:
    queue.seed([f"bad-{n:02d}" for n in range(12)])
    kill(queue)
    page = queue.dead_letter_page(limit=5, offset=10)
    assert page.total == 12
    assert [d.item for d in page.items] == ["bad-10", "bad-11"]
    assert page.items[0].attempts == 2
    assert page.items[0].error == "boom bad-10 attempt 2"
    listed = [d.item for off in (0, 5, 10) for d in queue.dead_letter_page(5, off).items]
    assert sorted(listed) == [f"bad-{n:02d}" for n in range(12)]
    assert len(set(listed)) == 12
    with pytest.raises(ValueError):
        queue.dead_letter_page(limit=MAX_PAGE + 1)


def test_old_style_token_has_no_lease_time(queue: LeaseQueue) -> None:
    """A lease taken by an older client (token without '@') is listed without a lease time."""
    queue.seed(["x"])
    [lease] = queue.lease("w")
    holders = queue.queue_keys.key("holders")
    queue.client.hset(holders, "x", "abc.1:old-worker")
    [info] = queue.all_leases()
    assert (info.worker_id, info.leased_at, info.age(1.0)) == ("old-worker", None, None)
    assert isinstance(lease, Lease)


def test_items_added_while_the_last_worker_exits_are_never_stranded(
    redis_client: redis.Redis,
) -> None:
    """The operator's rule, on real Redis: workers exit once they see the queue done (as
    ``queuejob worker`` does); items are added at that very moment; a supervisor starts a new
    worker whenever none is alive and the queue is not done (the operator re-creating a
    Complete Job). Every item is processed, exactly once, whichever side wins each race."""
    q = LeaseQueue(redis_client, "exit-race")
    q.configure(QueueConfig(lease_seconds=30, max_attempts=3))
    done: list[str] = []
    lock = threading.Lock()
    exits = 0

    def worker() -> None:
        nonlocal exits
        wq = LeaseQueue(redis_client, "exit-race")
        while True:
            leases = wq.lease("w", n=1)
            if not leases:
                if wq.done():
                    with lock:
                        exits += 1
                    return
                continue
            wq.complete(leases[0])
            with lock:
                done.append(leases[0].item)

    q.seed(["seed"])
    alive: list[threading.Thread] = []
    added = ["seed"]

    def supervise() -> None:
        """No live worker and work left -> start one (never two at a time)."""
        nonlocal alive
        alive = [t for t in alive if t.is_alive()]
        if not alive and not q.done():
            t = threading.Thread(target=worker)
            t.start()
            alive.append(t)

    def wait_done() -> None:
        for _ in range(100_000):
            supervise()
            if q.done():
                return
            threading.Event().wait(0.001)
        raise AssertionError(f"queue not done: {q.stats()}")

    for round_ in range(100):
        # Add exactly when the queue is done: the worker is then between done() and its exit.
        wait_done()
        item = f"late-{round_}"
        assert q.add([item]).added == 1
        added.append(item)
    wait_done()
    for t in alive:
        t.join()
    supervise()
    assert not alive or q.done()
    assert sorted(done) == sorted(added)
    assert q.stats() == q.stats()._replace(total=101, succeeded=101, pending=0, leased=0)
    assert exits >= 1
