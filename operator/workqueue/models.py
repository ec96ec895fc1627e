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
