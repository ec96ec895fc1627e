"""Fair queuing with shuffle sharding: waiters of many flows, served round-robin by queue.

The model is Kubernetes' API Priority and Fairness, reduced to equal-cost requests:

- there are ``queues`` FIFO queues; every flow (here: a namespace) is dealt a *hand* of
  ``hand_size`` distinct queues, a pure function of the flow's name (shuffle sharding);
- a new waiter joins the shortest queue of its flow's hand (the first of them on a tie);
- the next waiter served is the head of the next non-empty queue after the one served last
  (round-robin over queues, each pass serving one waiter per non-empty queue).

Guarantees: a waiter is served after at most ``(its position in its queue) x (non-empty
queues)`` others; a flow whose hand shares no queue with a flooding flow waits at most one
pass, however many waiters the flooding flow has (with 64 queues and hands of 4, two flows share
a queue in about 23% of cases and share all four of them with probability 1 / C(64, 4) ~ 1.6e-6,
so one flow can hold up another only in a small, stable subset of pairs). Order within a queue
is FIFO. A waiter that gives up is taken out (:meth:`FairQueues.remove`), so it holds no place
in the lengths that the next waiters choose by. Not thread-safe: one event loop.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


def deal(flow: Hashable, queues: int, hand_size: int) -> tuple[int, ...]:
    """The hand of ``flow``: ``hand_size`` distinct queue indices out of ``queues``.

    Deterministic (SHA-256 of ``repr(flow)``), dealt as APF does: successive remainders of
    one large number pick a card from the remaining deck each time.
    """
    if not 1 <= hand_size <= queues:
        raise ValueError(f"need 1 <= hand_size <= queues, got {hand_size}, {queues}")
    number = int.from_bytes(hashlib.sha256(repr(flow).encode()).digest(), "big")
    deck = list(range(queues))
    hand = []
    for remaining in range(queues, queues - hand_size, -1):
        number, pick = divmod(number, remaining)
        hand.append(deck.pop(pick))
    return tuple(hand)


class FairQueues(Generic[T]):
    """Waiters of flows in shuffle-sharded FIFO queues, served round-robin (see module doc)."""

    def __init__(
        self,
        queues: int = 64,
        hand_size: int = 4,
        skip: Callable[[T], bool] = lambda _: False,
    ) -> None:
        deal("check", queues, hand_size)
        self.queues = queues
        self.hand_size = hand_size
        self._skip = skip
        self._queues: list[deque[tuple[Hashable, T]]] = [deque() for _ in range(queues)]
        self._hands: dict[Hashable, tuple[int, ...]] = {}
        self._next = 0
        self._waiting: Counter[Hashable] = Counter()

    def hand(self, flow: Hashable) -> tuple[int, ...]:
        """The queues ``flow`` may use (cached :func:`deal`)."""
        found = self._hands.get(flow)
        if found is None:
            found = self._hands[flow] = deal(flow, self.queues, self.hand_size)
        return found

    def lengths(self) -> list[int]:
        """Entries per queue (including skipped ones not yet dropped)."""
        return [len(q) for q in self._queues]

    def push(self, flow: Hashable, item: T) -> int:
        """Queue ``item`` of ``flow`` on the shortest queue of its hand; returns that queue."""
        hand = self.hand(flow)
        chosen = min(hand, key=lambda i: (len(self._queues[i]), hand.index(i)))
        self._queues[chosen].append((flow, item))
        self._waiting[flow] += 1
        return chosen

    def remove(self, index: int, flow: Hashable, item: T) -> bool:
        """Take ``item`` of ``flow`` out of queue ``index`` (where :meth:`push` put it), e.g.
        a cancelled waiter, so that it no longer counts in the queue's length when the next
        waiter picks the shortest queue of its hand. False if it is not there (served)."""
        queue = self._queues[index]
        for position, (queued_flow, queued) in enumerate(queue):
            if queued is item and queued_flow == flow:
                del queue[position]
                self._uncount(flow)
                return True
        return False

    def pop(self) -> tuple[Hashable, T] | None:
        """The next waiter round-robin, dropping skipped ones (e.g. cancelled); None if none."""
        for _ in range(self.queues):
            index = self._next
            queue = self._queues[index]
            while queue:
                flow, item = queue.popleft()
                self._uncount(flow)
                if not self._skip(item):
                    self._next = (index + 1) % self.queues
                    return flow, item
            self._next = (index + 1) % self.queues
        return None

    def _uncount(self, flow: Hashable) -> None:
        self._waiting[flow] -= 1
        if self._waiting[flow] <= 0:
            del self._waiting[flow]

    def waiting(self) -> dict[Hashable, int]:
        """Entries per flow (including skipped ones not yet dropped)."""
        return dict(self._waiting)

    def __len__(self) -> int:
        return sum(self._waiting.values())


__all__ = ["FairQueues", "deal"]
