"""client-go-style rate limiters and the shared backoff formula (pure Python, deterministic)."""

from __future__ import annotations

import random

import pytest

from workqueue.backoff import apply_jitter, exponential_delay
from workqueue.limiters import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    TokenBucket,
)

pytestmark = pytest.mark.timeout(30)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_exponential_delay_doubles_and_caps() -> None:
    assert [exponential_delay(n, 0.5, 5.0) for n in range(6)] == [0.5, 1, 2, 4, 5, 5]
    assert exponential_delay(5000, 1.0, 60.0) == 60.0  # no overflow
    with pytest.raises(ValueError, match="n"):
        exponential_delay(-1, 1, 2)


def test_jitter_stays_within_bounds() -> None:
    rng = random.Random(7)
    for n in range(12):
        d = exponential_delay(n, 1.0, 30.0, 0.2, rng.random)
        full = min(30.0, 2.0**n)
        assert full * 0.8 <= d <= full
    assert apply_jitter(10, 0.5, lambda: 1.0) == 5.0
    assert apply_jitter(10, 0.5, lambda: 1.0, upward=True) == 15.0
    with pytest.raises(ValueError, match="jitter"):
        apply_jitter(1, 2)


def test_item_exponential_failure() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000)
    assert isinstance(limiter, RateLimiter)
    assert [limiter.when("a") for _ in range(4)] == [0.005, 0.01, 0.02, 0.04]
    assert limiter.when("b") == 0.005  # per item
    assert limiter.num_requeues("a") == 4
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 0.005
    capped = ItemExponentialFailureRateLimiter(1, 3)
    assert [capped.when("x") for _ in range(4)] == [1, 2, 3, 3]
    assert capped.delay_for(1) == 2  # from kopf's retry count, records nothing
    assert capped.num_requeues("x") == 4
    with pytest.raises(ValueError, match="cap"):
        ItemExponentialFailureRateLimiter(2, 1)


def test_item_exponential_failure_with_seeded_jitter() -> None:
    a = ItemExponentialFailureRateLimiter(1, 100, jitter=0.5, rand=random.Random(1).random)
    b = ItemExponentialFailureRateLimiter(1, 100, jitter=0.5, rand=random.Random(1).random)
    first = [a.when("k") for _ in range(6)]
    assert first == [b.when("k") for _ in range(6)]
    assert all(2**n * 0.5 <= d <= 2**n for n, d in enumerate(first))
    assert len(set(first)) == 6


def test_fast_slow() -> None:
    limiter = ItemFastSlowRateLimiter(0.1, 10, max_fast_attempts=2)
    assert [limiter.when("a") for _ in range(4)] == [0.1, 0.1, 10, 10]
    assert limiter.num_requeues("a") == 4
    limiter.forget("a")
    assert limiter.when("a") == 0.1


def test_token_bucket_reserves_into_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=2, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(5)] == [0, 0, 0, 0.5, 1.0]
    clock.now = 10
    assert bucket.tokens() == 3  # refilled to the burst only
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, 0)


def test_bucket_rate_limiter() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10, burst=2, clock=clock)
    assert [limiter.when(i) for i in range(4)] == [0, 0, 0.1, 0.2]
    assert limiter.num_requeues(1) == 0
    limiter.forget(1)  # no-op, like client-go
    jittered = BucketRateLimiter(qps=1, burst=1, jitter=0.5, rand=lambda: 1.0, clock=clock)
    assert jittered.when("a") == 0
    assert jittered.when("a") == 1.5  # jitter only lengthens a bucket wait


def test_max_of_is_client_go_default_shape() -> None:
    clock = FakeClock()
    limiter = MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000),
        BucketRateLimiter(qps=10, burst=100, clock=clock),
    )
    assert limiter.when("a") == 0.005
    assert limiter.when("a") == 0.01
    assert limiter.num_requeues("a") == 2
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    slow = MaxOfRateLimiter(
        ItemFastSlowRateLimiter(0.1, 5, 1), ItemExponentialFailureRateLimiter(1, 3)
    )
    assert [slow.when("x") for _ in range(3)] == [1, 5, 5]
    with pytest.raises(ValueError):
        MaxOfRateLimiter()
