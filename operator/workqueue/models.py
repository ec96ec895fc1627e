"""Value types returned by the queue: leases, statistics, dead letters."""

from __future__ import annotations

from typing import NamedTuple


class Lease(NamedTuple):
    """One leased item. ``token`` identifies this lease; only its holder may acknowledge it.

    ``attempt`` is 1 for the first lease of the item and counts every lease (a ``release``
    gives the attempt back). ``expires_at`` is in the queue's clock (Redis TIME by default).
    """

    item: str
    token: str
    attempt: int
    worker_id: str
    expires_at: float


class QueueStats(NamedTuple):
    """Counts of one queue, read atomically. ``total`` = distinct items ever seeded;
    ``retries`` = re-queues after a failure or an expired lease."""

    pending: int
    delayed: int
    leased: int
    succeeded: int
    dead: int
    total: int
    retries: int

    @property
    def done(self) -> bool:
        """Nothing pending, delayed or leased."""
        return self.pending == 0 and self.delayed == 0 and self.leased == 0


class DeadLetter(NamedTuple):
    """An item that used up its attempts, with its last error."""

    item: str
    error: str
    attempts: int


class InFlight(NamedTuple):
    """A current lease as seen by an observer (``in_flight()``)."""

    item: str
    worker_id: str
    attempt: int
    expires_at: float


class FailResult(NamedTuple):
    """Outcome of ``fail``: dead-lettered, or retried at ``retry_at`` (queue clock)."""

    dead: bool
    retry_at: float | None


class Handoff(NamedTuple):
    """Outcome of ``complete_and_lease``: the new leases and the refused completions
    (item -> reason)."""

    leases: list[Lease]
    stale: dict[str, str]


class LeaseInfo(NamedTuple):
    """A current lease as listed by ``leases()``: who holds the item, since when (queue clock;
    ``None`` for a lease taken by an older client, whose tokens carry no lease time), until when
    (``expires_at``, moved on by every renewal)."""

    item: str
    worker_id: str
    attempt: int
    leased_at: float | None
    expires_at: float

    def age(self, now: float) -> float | None:
        """Seconds the item has been held at ``now`` (queue clock), if the lease time is known."""
        return None if self.leased_at is None else max(0.0, now - self.leased_at)


class LeasePage(NamedTuple):
    """One page of ``leases()``: the leases, the cursor of the next page (``None`` when the
    listing is complete) and the queue's clock when the page was read."""

    leases: list[LeaseInfo]
    cursor: int | None
    now: float


class DeadLetterPage(NamedTuple):
    """One page of ``dead_letter_page()``: up to ``limit`` dead letters and how many there are."""

    items: list[DeadLetter]
    total: int


class RedriveResult(NamedTuple):
    """Outcome of ``redrive``: items moved back to pending, dead letters left, and the listed
    items that were not dead letters (item -> where they are: pending, leased, succeeded...)."""

    redriven: int
    dead_left: int
    skipped: dict[str, str]


class AddResult(NamedTuple):
    """Outcome of ``add``: items appended to pending, and items already known to the queue
    (seeded or added before, in any state), which were not added again."""

    added: int
    present: int
