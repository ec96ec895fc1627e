"""Property test: the Redis LeaseQueue against a plain Python model of its semantics.

A hypothesis rule-based state machine runs random sequences of seed, lease, complete, fail,
renew, release, reap and time passing (a controllable clock) on both, and after every step
compares the stats, the pending order and every acknowledgement's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from workqueue.config import QueueConfig
from workqueue.errors import StaleLeaseError
from workqueue.models import Lease
from workqueue.redisqueue import LeaseQueue

pytestmark = pytest.mark.timeout(120)

ITEMS = ["a", "b", "c", "d"]
LEASE_SECONDS = 10.0
MAX_ATTEMPTS = 2
CONFIG = QueueConfig(
    lease_seconds=LEASE_SECONDS,
    max_attempts=MAX_ATTEMPTS,
    backoff_base=1,
    backoff_cap=4,
    backoff_jitter=0.3,  # with rand() == 0 the jitter takes nothing off: deterministic
)


@dataclass
class Model:
    """The queue's documented semantics, in memory."""

    now: float = 1000.0
    seen: set[str] = field(default_factory=set)
    pending: list[str] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)  # expiry (leased) or due (delayed)
    holders: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    succeeded: dict[str, str] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    acked: dict[str, str] = field(default_factory=dict)
    retries: int = 0

    def fire_timers(self) -> int:
        due = sorted((t, item) for item, t in self.timers.items() if t <= self.now)
        requeue = [item for _, item in due if item not in self.holders]
        expired = [item for _, item in due if item in self.holders]
        for item in expired:
            del self.holders[item]
            if self.attempts.get(item, 0) >= MAX_ATTEMPTS:
                self.dead.add(item)
            else:
                requeue.append(item)
                self.retries += 1
        for _, item in due:
            del self.timers[item]
        self.pending += requeue
        return len(expired)

    def lease(self, n: int, seconds: float) -> list[str]:
        self.fire_timers()
        taken, self.pending = self.pending[:n], self.pending[n:]
        for item in taken:
            self.attempts[item] = self.attempts.get(item, 0) + 1
            self.timers[item] = self.now + seconds
        return taken


class QueueMachine(RuleBasedStateMachine):
    client: redis.Redis

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.queue = LeaseQueue(self.client, "model", clock=self.clock, rand=lambda: 0.0)
        self.queue.delete()
        self.queue.configure(CONFIG)
        self.leases: list[Lease] = []

    def teardown(self) -> None:
        self.queue.close()

    def clock(self) -> float:
        return self.model.now

    def _stale(self, lease: Lease) -> bool:
        return self.model.holders.get(lease.item) != lease.token

    @rule(items=st.lists(st.sampled_from(ITEMS), max_size=4))
    def seed(self, items: list[str]) -> None:
        new = [i for i in dict.fromkeys(items) if i not in self.model.seen]
        assert self.queue.seed(items) == len(new)
        self.model.seen.update(new)
        self.model.pending += new

    @rule(
        worker=st.sampled_from(["w1", "w2"]),
        n=st.integers(1, 3),
        seconds=st.sampled_from([None, 2.0]),
    )
    def lease(self, worker: str, n: int, seconds: float | None) -> None:
        expected = self.model.lease(n, LEASE_SECONDS if seconds is None else seconds)
        got = self.queue.lease(worker, n, lease_seconds=seconds)
        assert [lease.item for lease in got] == expected
        for lease in got:
            assert lease.attempt == self.model.attempts[lease.item]
            assert lease.expires_at == self.model.timers[lease.item]
            self.model.holders[lease.item] = lease.token
        self.leases += got

    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        if not self.leases:
            return
        lease = data.draw(st.sampled_from(self.leases))
        m = self.model
        if not self._stale(lease):
            self.queue.complete(lease)
            del m.holders[lease.item]
            del m.timers[lease.item]
            m.succeeded[lease.item] = lease.token
        elif m.succeeded.get(lease.item) == lease.token:
            self.queue.complete(lease)  # a repeated completion is accepted
        else:
            with pytest.raises(StaleLeaseError):
                self.queue.complete(lease)

    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        if not self.leases:
            return
        lease = data.draw(st.sampled_from(self.leases))
        m = self.model
        if not self._stale(lease):
            result = self.queue.fail(lease, f"error {lease.token}")
            del m.holders[lease.item]
            m.acked[lease.item] = lease.token
            if m.attempts[lease.item] >= MAX_ATTEMPTS:
                assert result.dead
                del m.timers[lease.item]
                m.dead.add(lease.item)
            else:
                delay = min(4.0, 2.0 ** (m.attempts[lease.item] - 1))
                assert result.retry_at == m.now + delay
                m.timers[lease.item] = m.now + delay
                m.retries += 1
        elif m.acked.get(lease.item) == lease.token:
            assert self.queue.fail(lease, "again") == (False, None)
        else:
            with pytest.raises(StaleLeaseError):
                self.queue.fail(lease, "stale")

    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        if not self.leases:
            return
        lease = data.draw(st.sampled_from(self.leases))
        if not self._stale(lease):
            renewed = self.queue.renew(lease)
            self.model.timers[lease.item] = self.model.now + LEASE_SECONDS
            assert renewed.expires_at == self.model.timers[lease.item]
        else:
            with pytest.raises(StaleLeaseError):
                self.queue.renew(lease)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if not self.leases:
            return
        lease = data.draw(st.sampled_from(self.leases))
        m = self.model
        if not self._stale(lease):
            self.queue.release(lease)
            del m.holders[lease.item]
            del m.timers[lease.item]
            m.acked[lease.item] = lease.token
            m.attempts[lease.item] -= 1
            m.pending.insert(0, lease.item)
        elif m.acked.get(lease.item) == lease.token:
            self.queue.release(lease)
        else:
            with pytest.raises(StaleLeaseError):
                self.queue.release(lease)

    @rule()
    def reap(self) -> None:
        assert self.queue.reap() == self.model.fire_timers()

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 4.0, 10.0, 30.0]))
    def advance(self, seconds: float) -> None:
        self.model.now += seconds

    @invariant()
    def agrees_with_model(self) -> None:
        m = self.model
        stats = self.queue.stats()
        assert stats.pending == len(m.pending)
        assert stats.leased == len(m.holders)
        assert stats.delayed == len(m.timers) - len(m.holders)
        assert stats.succeeded == len(m.succeeded)
        assert stats.dead == len(m.dead)
        assert stats.total == len(m.seen)
        assert stats.retries == m.retries
        assert self.queue.done() == (not m.pending and not m.timers)
        pending = self.client.lrange(self.queue.queue_keys.key("pending"), 0, -1)
        assert pending == m.pending
        # Every item seeded is in exactly one place: nothing lost, nothing duplicated.
        places = m.pending + list(m.timers) + list(m.succeeded) + sorted(m.dead)
        assert sorted(places) == sorted(m.seen)


def test_queue_matches_model(redis_client: redis.Redis) -> None:
    QueueMachine.client = redis_client
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=50,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
