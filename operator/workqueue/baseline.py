"""The Kubernetes docs' work queue ("Fine parallel processing using a work queue"), as a baseline.

Re-implemented here from the algorithm the docs describe (no code copied), for the benchmark:

- ``lease``: ``BRPOPLPUSH`` (or ``RPOPLPUSH`` when not blocking) moves an item from the main
  list to the processing list, then ``SETEX`` writes a lease key (named by a hash of the item)
  holding the worker's session id;
- ``complete``: ``LREM`` removes the item from the processing list, then ``DEL`` its lease key;
- ``empty``: ``LLEN`` of the main list and of the processing list are both 0.

Known flaw, kept on purpose: nothing ever takes an item back from the processing list when its
worker crashes (the lease key just expires), so ``empty()`` never becomes true again and the Job
never completes. :class:`workqueue.redisqueue.LeaseQueue` fixes that.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

import redis


class DocsWorkQueue:
    """The docs' ``rediswq`` algorithm over a main list ``name`` and ``name:processing``."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self.client = client
        self.session = uuid.uuid4().hex
        self.main_key = name
        self.processing_key = f"{name}:processing"
        self.lease_prefix = f"{name}:leased_by_session:"

    def seed(self, items: Iterable[str]) -> int:
        """``RPUSH`` the items onto the main list (the docs seed with redis-cli rpush)."""
        batch = list(items)
        for start in range(0, len(batch), 1000):
            self.client.rpush(self.main_key, *batch[start : start + 1000])
        return len(batch)

    def _lease_key(self, item: str) -> str:
        return self.lease_prefix + hashlib.sha224(item.encode("utf-8")).hexdigest()

    def empty(self) -> bool:
        """Both lists are empty (short-circuits like the docs: main list first)."""
        return self.client.llen(self.main_key) == 0 and self.client.llen(self.processing_key) == 0

    def lease(
        self, lease_secs: int = 10, block: bool = True, timeout: int | None = 2
    ) -> str | None:
        """Move one item to the processing list and record a lease key; None when none came."""
        if block:
            raw = self.client.brpoplpush(self.main_key, self.processing_key, timeout=timeout or 0)
        else:
            raw = self.client.rpoplpush(self.main_key, self.processing_key)
        if raw is None:
            return None
        item = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        self.client.execute_command(  # type: ignore[no-untyped-call]
            "SETEX", self._lease_key(item), lease_secs, self.session
        )
        return item

    def complete(self, item: str) -> None:
        """Remove the item from the processing list, then its lease key."""
        self.client.lrem(self.processing_key, 0, item)
        self.client.delete(self._lease_key(item))
