"""A reliable Redis lease queue: the docs' "fine parallel processing" work queue, made reliable.

Data model (keys ``wq:{name}:*``, one hash tag, see ``workqueue.keys`` and
``scripts/lib.lua``): a ``pending`` list; ``holders`` (item -> lease token) for leased items;
one ``timers`` zset holding the lease expiry of leased items and the due time of delayed
retries; per-item ``attempts``; ``succeeded``; ``dead`` with the last ``errors``; the ``seen``
set of every item ever seeded or added, except those of the index range, which its cursor
covers; the shared token ``bucket``; the ``durations`` histogram (``workqueue.durations``).

Guarantees:

- **Atomic.** Every change is one Lua script (``workqueue/scripts``). Redis does not roll a
  failed script back, so: the less frequent scripts check the types of the keys they touch
  before writing (a ``WRONGTYPE`` error changes nothing); the hot lease/complete paths add an
  item to its new place before removing it from the old one and push popped items back if a
  later write fails (an error never loses an item). :class:`QueueTypeError` names the mistyped
  key(s).
- **Nothing lost.** An item is in exactly one of pending / delayed / leased / succeeded / dead.
  It leaves ``leased`` only through an acknowledgement that Redis executed (complete, fail,
  release) or through ``reap`` after its lease expired. If Redis is unreachable the call raises
  :class:`QueueUnavailableError` and the item stays where it was.
- **Exactly one holder.** Each lease gets a fresh token; ``complete``/``fail``/``renew``/
  ``release`` with a token that no longer holds the item raise :class:`StaleLeaseError`
  (the reason says what happened: re-leased, completed, dead-lettered...). An expired lease that
  nobody reaped yet may still be completed or renewed by its holder. Acknowledgements are
  idempotent: repeating one with the same token (e.g. after a lost reply) is accepted.
- **Idempotent seeding.** Items are unique; every item ever seeded is remembered, so seeding
  again (after a crash) adds nothing twice and never re-adds a succeeded item.
- **Index ranges.** ``seed_range(start, count)`` seeds the decimal indices server-side in
  chunks, each chunk atomic with a cursor in Redis, so a million items take about 500 round
  trips and an interrupted seed resumes where it stopped (see :meth:`LeaseQueue.seed_range`).
  The range's items are known by the cursor (``[range_first, range_next)``), not listed in
  ``seen``: a pending range item costs only its list entry (about 6 bytes).
- **Per-item durations.** Each completion records the item's processing time (lease to
  completion) in a histogram in Redis, O(1) per item (:meth:`LeaseQueue.durations`).
- **Operating a live queue.** ``add`` appends items never seen before (idempotent, no item
  twice); ``redrive`` moves dead letters back to pending with their attempts reset, atomically
  per item (counts stay consistent: ``total`` unchanged, each item moved once); ``leases`` and
  ``dead_letter_page`` list who holds what (holder, attempt, lease time) and what died (attempts,
  last error) in bounded pages, read-only.
- **Self-healing.** ``lease`` first moves due retries to pending and reaps expired leases
  (bounded work per call), so a crashed worker's items come back without any reaper; ``reap``
  does the same on demand and is safe to run concurrently. The timers are only looked at when
  one can be due: the config hash keeps ``due``, a lower bound of every timer (lowered by each
  script that sets an earlier timer, recomputed after each pass), so most calls skip them.
- **Time.** By default scripts read the Redis server's ``TIME``: all workers share one clock and
  their own clocks do not matter. ``clock=`` (a callable returning seconds) passes the caller's
  time instead (as ``ARGV``), which makes tests deterministic; every user of one queue must then
  use the same clock. Redis >= 7 replicates script effects, so ``TIME`` in scripts is safe.
- **Round trips.** ``lease(n)`` = one call for up to n items; ``complete_many`` acknowledges a
  batch in one call; ``complete_and_lease`` acknowledges and leases the next batch in one call
  (the hot path of a worker). ``lease(timeout=...)`` polls with the wait hint from the script
  (rate limit / next retry / next expiry), not a blocking command.
- **Functions.** The worker calls run as ``FCALL`` of a Redis function library
  (``workqueue.scripts.library``: the same code as the scripts, defined once when loaded instead
  of on every call; about 13% less Redis CPU per single-item call). A call that finds its
  function missing loads the library if its user may (the operator's), else it runs as the
  script (``EVALSHA``) and tries the function again :data:`FUNCTIONS_RETRY_SECONDS` later: a
  worker's ACL user may call functions but never load one (``workqueue.acl``).
- **Connections.** The worker calls (lease, complete, complete_and_lease, fail, renew, release)
  run on a dedicated connection per thread (taken from the client's pool, renewed after a fork,
  given back by ``close()`` or when the object is collected), not through ``execute_command``:
  that path costs about three times more client CPU per call, and it silently re-sends a
  command after a connection error, which would run a non-idempotent lease twice. Here a broken
  connection raises :class:`QueueUnavailableError` and the caller decides (acknowledgements are
  idempotent, so repeating one is safe; a lease whose reply was lost comes back after expiry).
  Every other call (seed, configure, reap, stats, ...) is idempotent or read-only and goes
  through the client's pool and retry policy.

Redis Cluster (a ``redis.cluster.RedisCluster`` client):

- **One slot per queue.** Every key carries the hash tag ``{name}``; scripts declare all of them,
  so Redis runs a script only when all keys are on the node (during a slot migration it answers
  ``TRYAGAIN``/``ASK`` instead, and the script later runs whole on the new owner).
- **Redirections are followed, nothing is re-sent.** Worker calls go to the slot's master on a
  dedicated connection from the cluster client's per-node pool (``workqueue.routing``); replies
  that mean "not run" (``MOVED``, ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``, ``NOSCRIPT``) are
  followed up to :data:`MAX_REDIRECTS` times (about 5 s); a broken connection raises
  :class:`QueueUnavailableError` and the slot map is re-read on the next call, which finds a
  promoted replica after a failover. Other calls go through ``RedisCluster`` and its retries.
- **Durability is Redis'.** Replication is asynchronous: a master that dies can take the last
  acknowledged calls with it (a completion lost so comes back as a leased item whose lease
  expires: the item runs again; a lost lease hands the item out again). ``wait_replicas=N``
  sends ``WAIT N`` in the same round trip as each worker call: a call that returned is on N
  replicas; one whose ``WAIT`` timed out raises :class:`QueueUnavailableError` although it ran.

``fail`` computes the retry delay client-side with ``workqueue.backoff.exponential_delay`` from
the backoff settings this object loaded (``reload_config()`` refreshes them); ``max_attempts``,
``lease_seconds`` and the rate limit are read by the scripts from Redis on every call.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis
from redis.commands.core import Script
from redis.connection import Connection

from workqueue.backoff import Uniform, exponential_delay
from workqueue.config import QueueConfig
from workqueue.durations import DurationHistogram
from workqueue.errors import (
    REDIS_ERRORS,
    ItemError,
    QueueTypeError,
    StaleLeaseError,
    translate,
    translated,
)
from workqueue.keys import KEY_TYPES, QueueKeys
from workqueue.models import (
    AddResult,
    DeadLetter,
    DeadLetterPage,
    FailResult,
    Handoff,
    InFlight,
    Lease,
    LeaseInfo,
    LeasePage,
    QueueStats,
    RedriveResult,
)
from workqueue.routing import RedisClient, SlotRoute, redirect_of
from workqueue.scripts import Library, QueueScripts, library

T = TypeVar("T")

#: Items per seed script call (keeps each call short; seeding as a whole stays idempotent).
SEED_CHUNK = 1000
#: Indices per ``seed_range`` script call: the script generates them server-side, 10-20 ms of
#: Redis time per call, so other clients wait at most that long behind it.
RANGE_CHUNK = 2000
#: Most items one lease call may return.
MAX_LEASE_BATCH = 1000
#: Longest error text kept for an item.
MAX_ERROR_CHARS = 2000
#: Longest sleep between polls of ``lease(timeout=...)``.
MAX_POLL_SECONDS = 0.25
#: Redirections (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) followed by one worker call before it gives
#: up with :class:`QueueUnavailableError`; the pauses between them add up to about 5 s.
MAX_REDIRECTS = 30
#: Largest page of ``leases``/``dead_letter_page`` and largest chunk of ``redrive()`` (all).
MAX_PAGE = 1000
#: Most chunks one ``redrive()`` of all dead letters moves before it returns.
MAX_REDRIVE_ROUNDS = 1000

Clock = Callable[[], float]


#: Seconds a queue object runs its worker calls as scripts after a function was missing or
#: not permitted and the library could not be loaded, before it tries the function again.
FUNCTIONS_RETRY_SECONDS = 30.0

#: Calls made by workers in their loop: they run on a dedicated connection (see module doc).
_WORKER_CALLS = frozenset({"lease", "complete", "complete_and_lease", "fail", "renew", "release"})


def _release_all(conns: list[tuple[redis.ConnectionPool, Connection]]) -> None:
    """Give dedicated connections back to their pool (from close() or the GC finalizer)."""
    while conns:
        pool, conn = conns.pop()
        if getattr(conn, "pid", os.getpid()) == os.getpid():
            pool.release(conn)


def _pause(attempt: int) -> float:
    """Seconds to wait before following redirection number ``attempt`` (from 1; the first
    attempt is sent at once, without any sleep or yield)."""
    return min(0.002 * 2.0**attempt, 0.25)


def _function_unusable(exc: redis.exceptions.ResponseError) -> bool:
    """The reply says the ``FCALL`` did not run: no such function, or the user may not FCALL."""
    text = str(exc)
    return "Function not found" in text or "permissions to run the 'fcall' command" in text


def _check_page(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be in 1..{MAX_PAGE}, got {limit}")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class LeaseQueue:
    """One queue named ``name`` on ``client`` (see the module doc for the guarantees)."""

    def __init__(
        self,
        client: RedisClient,
        name: str,
        *,
        clock: Clock | None = None,
        rand: Uniform = random.random,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        declare_keys: bool = True,
        functions: bool = True,
    ) -> None:
        """``client``: a ``redis.Redis`` or a ``redis.cluster.RedisCluster``.

        ``wait_replicas`` > 0: every worker call also sends ``WAIT wait_replicas timeout`` in the
        same round trip, and returns only once that many replicas have its effect; when fewer
        confirm within ``wait_timeout`` seconds it raises :class:`QueueUnavailableError` (the
        call did run on the master). See docs/guarantees.md for what this buys.

        ``declare_keys=False`` passes only the config key to the scripts, which derive the
        others: correct on one server only, kept for benchmarks/bench_declared_keys.py.

        ``functions=False`` runs the worker calls as scripts (``EVALSHA``) instead of the
        function library (``FCALL``; the default, see the module doc); kept for benchmarks.
        """
        if wait_replicas < 0 or not wait_timeout > 0:
            raise ValueError("wait_replicas must be >= 0 and wait_timeout > 0")
        self.client = client
        self.queue_keys = QueueKeys(name)
        self.name = name
        self.clock = clock
        self._rand = rand
        self._keylist = self.queue_keys.ordered
        # Scripts get every key declared (Redis Cluster checks only those); see scripts/lib.lua.
        self._config_key = self._keylist[0]
        self._declared: tuple[Any, ...] = (
            (len(self._keylist), *self._keylist) if declare_keys else (1, self._config_key)
        )
        self._route = SlotRoute(client, self._config_key)
        self._wait: tuple[Any, ...] | None = (
            ("WAIT", wait_replicas, max(1, round(wait_timeout * 1000))) if wait_replicas else None
        )
        self.wait_replicas = wait_replicas
        self._scripts = QueueScripts(client)
        # The worker calls go through the function library unless functions=False (or while
        # it cannot be used: then until _functions_off, a time.monotonic()).
        self._functions: Library | None = library() if functions and declare_keys else None
        self._functions_off = 0.0
        self._config: QueueConfig | None = None
        self._local = threading.local()
        self._conns: list[tuple[redis.ConnectionPool, Connection]] = []
        self._conns_lock = threading.Lock()
        weakref.finalize(self, _release_all, self._conns)
        # Lease tokens are "<nonce>.<i>:<worker>"; the nonce is unique per lease call.
        self._nonce_prefix = secrets.token_hex(6)
        self._calls = itertools.count()

    def __repr__(self) -> str:
        return f"LeaseQueue({self.name!r})"

    # -- configuration -----------------------------------------------------------------------

    def configure(self, config: QueueConfig) -> QueueConfig:
        """Store ``config`` in Redis (idempotent; replaces any previous config)."""
        self._config = self._write_config("set", config)
        return self._config

    @property
    def config(self) -> QueueConfig:
        """The config in Redis (loaded once; the defaults are stored if there is none yet)."""
        if self._config is None:
            self._config = self._write_config("default", QueueConfig())
        return self._config

    def reload_config(self) -> QueueConfig:
        """Read the config from Redis again."""
        self._config = None
        return self.config

    def _write_config(self, mode: str, config: QueueConfig) -> QueueConfig:
        flat: list[str] = []
        for field, value in config.to_redis().items():
            flat += [field, value]
        raw = self._run("configure", self._scripts.configure, mode, *flat, now=False)
        pairs = [_text(v) for v in raw]
        return QueueConfig.from_redis(dict(zip(pairs[::2], pairs[1::2], strict=True)))

    # -- producers ---------------------------------------------------------------------------

    def seed(self, items: Iterable[str]) -> int:
        """Add items never seeded before to the tail of the queue; returns how many were new.

        Raises :class:`ItemError` (naming the item's position and the reason) before writing
        anything if an item is not a non-empty ``str`` or exceeds ``max_item_bytes``.
        """
        batch = self.validate_items(items)
        added = 0
        for start in range(0, len(batch), SEED_CHUNK):
            added += int(self._run("seed", self._scripts.seed, *batch[start : start + SEED_CHUNK]))
        return added

    def seed_range(
        self,
        start: int,
        count: int,
        *,
        chunk: int = RANGE_CHUNK,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Seed the index range ``start .. start+count-1`` (items are the decimal indices, like an
        Indexed Job's completion index) in order; returns how many items were new.

        Guarantees: the items are generated by the ``seed_range`` script, ``chunk`` indices
        per call (one round trip per chunk, none per item); each call adds its items and raises
        the queue's range cursor in one atomic step, so a seed interrupted at any point (a
        crash, a lost connection) and started again resumes at the cursor, and adds every item
        exactly once (the ``seen`` set also drops any item seeded twice). ``progress(done,
        count)`` is called after each chunk with the number of indices known to be seeded.
        """
        if isinstance(start, bool) or isinstance(count, bool) or start < 0 or count < 1:
            raise ValueError(f"need start >= 0 and count >= 1, got start={start} count={count}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        stop = start + count
        cursor = self.range_cursor()
        begin = cursor if cursor is not None and start <= cursor <= stop else start
        added = 0
        if progress is not None:
            progress(begin - start, count)
        for first in range(begin, stop, chunk):
            last = min(first + chunk, stop)
            reply = self._run("seed_range", self._scripts.seed_range, first, last)
            added += int(reply[0])
            if progress is not None:
                progress(last - start, count)
        return added

    def range_cursor(self) -> int | None:
        """The index the next ``seed_range`` call resumes at (every index below it that belongs
        to the range is in the queue), or None if no range was seeded yet. One HGET."""
        with translate(self.client, f"queue {self.name}: range_cursor"):
            raw = self.client.hget(self.queue_keys.key("counters"), "range_next")
        return None if raw is None else int(raw)

    def validate_items(self, items: Iterable[str]) -> list[str]:
        """The items as a list, or :class:`ItemError` for the first bad one."""
        if isinstance(items, str | bytes):
            raise ItemError("seed() takes an iterable of items, not a single string")
        limit = self.config.max_item_bytes
        out: list[str] = []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise ItemError(
                    f"item #{index} is of type {type(item).__name__}, expected str: {item!r:.80}"
                )
            if not item:
                raise ItemError(f"item #{index} is empty")
            size = len(item.encode("utf-8"))
            if size > limit:
                raise ItemError(
                    f"item #{index} is {size} bytes, more than max_item_bytes={limit}: "
                    f"{item:.40}..."
                )
            out.append(item)
        return out

    # -- workers -----------------------------------------------------------------------------

    def lease(
        self,
        worker_id: str,
        n: int = 1,
        lease_seconds: float | None = None,
        timeout: float = 0.0,
    ) -> list[Lease]:
        """Lease up to ``n`` items to ``worker_id``; waits up to ``timeout`` seconds for some.

        Returns ``[]`` when nothing could be leased in time (empty queue, retries not due yet,
        or the shared rate limit).
        """
        self._check_lease_args(worker_id, n, lease_seconds)
        deadline = time.monotonic() + timeout
        lease_arg = "" if lease_seconds is None else repr(float(lease_seconds))
        while True:
            nonce = self._nonce()
            reply = self._run("lease", self._scripts.lease, worker_id, n, lease_arg, nonce)
            leases, hint = self._parse_lease(reply, worker_id, nonce)
            remaining = deadline - time.monotonic()
            if leases or remaining <= 0:
                return leases
            pause = MAX_POLL_SECONDS if hint < 0 else min(max(hint, 0.005), MAX_POLL_SECONDS)
            time.sleep(min(pause, remaining))

    def complete(self, lease: Lease) -> None:
        """Mark the leased item succeeded; :class:`StaleLeaseError` if no longer the holder."""
        stale = self.complete_many([lease])
        if stale:
            item, reason = next(iter(stale.items()))
            raise StaleLeaseError(item, reason)

    def complete_many(self, leases: Sequence[Lease]) -> dict[str, str]:
        """Complete several leases in one call; returns the refused ones (item -> reason)."""
        if not leases:
            return {}
        args: list[str] = []
        for lease in leases:
            args += (lease.item, lease.token)
        return self._pairs(self._run("complete", self._scripts.complete, *args))

    def complete_and_lease(
        self,
        done: Sequence[Lease],
        worker_id: str,
        n: int = 1,
        lease_seconds: float | None = None,
    ) -> Handoff:
        """Complete ``done`` and lease up to ``n`` new items, in one round trip."""
        self._check_lease_args(worker_id, n, lease_seconds)
        lease_arg = "" if lease_seconds is None else repr(float(lease_seconds))
        nonce = self._nonce()
        args: list[Any] = [worker_id, n, lease_arg, nonce]
        for lease in done:
            args += (lease.item, lease.token)
        stale_raw, lease_raw = self._run(
            "complete_and_lease", self._scripts.complete_and_lease, *args
        )
        leases, _ = self._parse_lease(lease_raw, worker_id, nonce)
        return Handoff(leases, self._pairs(stale_raw))

    def fail(self, lease: Lease, error: str) -> FailResult:
        """Record a failure: retry after a backoff delay, or dead-letter at ``max_attempts``."""
        config = self.config
        delay = exponential_delay(
            max(lease.attempt - 1, 0),
            config.backoff_base,
            config.backoff_cap,
            config.backoff_jitter,
            self._rand,
        )
        reply = self._run(
            "fail",
            self._scripts.fail,
            lease.item,
            lease.token,
            str(error)[:MAX_ERROR_CHARS],
            repr(delay),
        )
        status, detail = _text(reply[0]), _text(reply[1])
        if status == "stale":
            raise StaleLeaseError(lease.item, detail)
        if status == "dead":
            return FailResult(dead=True, retry_at=None)
        if status == "acked":  # a repeated call whose first reply was lost
            return FailResult(dead=False, retry_at=None)
        return FailResult(dead=False, retry_at=int(detail) / 1e6)

    def renew(self, lease: Lease, lease_seconds: float | None = None) -> Lease:
        """Extend the lease (heartbeat); returns the lease with its new expiry."""
        if lease_seconds is not None and not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        arg = "" if lease_seconds is None else repr(float(lease_seconds))
        reply = self._run("renew", self._scripts.renew, lease.item, lease.token, arg)
        status, detail = _text(reply[0]), _text(reply[1])
        if status == "stale":
            raise StaleLeaseError(lease.item, detail)
        return Lease(lease.item, lease.token, lease.attempt, lease.worker_id, int(detail) / 1e6)

    def release(self, lease: Lease) -> None:
        """Give the item back to the head of the queue without counting the attempt."""
        reply = self._run("release", self._scripts.release, lease.item, lease.token)
        if _text(reply[0]) == "stale":
            raise StaleLeaseError(lease.item, _text(reply[1]))

    # -- maintenance and observation ---------------------------------------------------------

    def reap(self, limit: int = 1000) -> int:
        """Re-queue (or dead-letter) up to ``limit`` expired leases; returns how many."""
        return int(self._run("reap", self._scripts.reap, int(limit)))

    def stats(self) -> QueueStats:
        """All counts, read atomically in one round trip."""
        raw = self._run("stats", self._scripts.stats, ensure=False)
        return QueueStats(*(int(v) for v in raw[:7]))

    def durations(self) -> DurationHistogram:
        """The per-item processing times recorded so far (see ``workqueue.durations``); one
        ``HGETALL`` of a hash of at most 20 fields, whatever the queue's size. Read-only."""
        with translate(self.client, f"queue {self.name}: durations"):
            raw = self.client.hgetall(self.queue_keys.key("durations"))
        return DurationHistogram.from_redis({_text(k): _text(v) for k, v in raw.items()})

    def done(self) -> bool:
        """True exactly when nothing is pending, delayed or leased."""
        return self.stats().done

    def dead_letters(self, limit: int = 10) -> list[DeadLetter]:
        """The first ``limit`` dead-lettered items (oldest first) with their last error."""
        return self.dead_letter_page(limit).items

    def dead_letter_page(self, limit: int = 100, offset: int = 0) -> DeadLetterPage:
        """Up to ``limit`` (1..:data:`MAX_PAGE`) dead letters from position ``offset`` (oldest
        first, by the time they died), with their attempts and last error, and the number of
        dead letters; read atomically in one call.

        Pages by offset: a dead letter redriven between two calls shifts the later ones, so a
        listing taken while the queue changes may skip or repeat an item (never invent one).
        """
        _check_page(limit)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        raw = self._run(
            "dead_letters", self._scripts.dead_letters, int(limit), int(offset), ensure=False
        )
        items = [
            DeadLetter(_text(raw[i]), _text(raw[i + 1]), int(raw[i + 2]))
            for i in range(1, len(raw), 3)
        ]
        return DeadLetterPage(items, int(raw[0]))

    def leases(self, limit: int = 100, cursor: int = 0) -> LeasePage:
        """One page of the current leases: item, holder (worker id), attempt, lease time and
        expiry (queue clock). ``limit`` (1..:data:`MAX_PAGE`) is the page size as a hint (Redis'
        ``HSCAN COUNT``: a page may hold a few more or fewer); pass the returned ``cursor`` to
        get the next page, until it is ``None``.

        Guarantee (``HSCAN``'s): a lease held from the first page to the last is listed at least
        once; one taken or given back meanwhile may or may not be; an item may appear twice
        (e.g. when Redis resizes the hash), so callers that count should de-duplicate by item.
        Each page is read atomically; nothing is written.
        """
        _check_page(limit)
        raw = self._run("leases", self._scripts.leases, int(cursor), int(limit), ensure=False)
        nxt = int(raw[0])
        out = []
        for i in range(2, len(raw), 4):
            token = _text(raw[i + 1])
            head, _, worker = token.partition(":")
            _, at, stamp = head.partition("@")
            leased_at = int(stamp.split(".", 1)[0]) / 1e3 if at else None
            out.append(
                LeaseInfo(_text(raw[i]), worker, int(raw[i + 2]), leased_at, int(raw[i + 3]) / 1e6)
            )
        return LeasePage(out, nxt or None, int(raw[1]) / 1e6)

    def all_leases(self, limit: int = 1000) -> list[LeaseInfo]:
        """Up to ``limit`` current leases, de-duplicated (pages through :meth:`leases`)."""
        found: dict[str, LeaseInfo] = {}
        cursor: int | None = 0
        while cursor is not None and len(found) < limit:
            page = self.leases(min(MAX_PAGE, limit), cursor or 0)
            for lease in page.leases:
                found.setdefault(lease.item, lease)
            cursor = page.cursor
        return list(found.values())[:limit]

    # -- operating a live queue --------------------------------------------------------------

    def add(self, items: Iterable[str]) -> AddResult:
        """Append items to a live queue (workers may be leasing meanwhile).

        Each item is added at most once, ever: an item the queue already knows (seeded or added
        before, whether pending, leased, succeeded or dead) is counted in ``present`` and not
        added again (run a dead letter again with :meth:`redrive`). Validation as
        :meth:`seed` (nothing is written if an item is bad). Idempotent: repeating a call after
        a lost reply adds nothing twice. Each chunk of :data:`SEED_CHUNK` items is atomic.

        Adding never races with workers by itself: a worker that found the queue done before the
        items arrived may already have exited, so whoever runs the workers must start them again
        when the queue is not done any more (the operator re-creates a finished worker Job).
        """
        batch = list(dict.fromkeys(self.validate_items(items)))
        added = self.seed(batch)
        return AddResult(added, len(batch) - added)

    def redrive(self, items: Iterable[str] | None = None) -> RedriveResult:
        """Move dead letters back to pending: ``items`` (each distinct item once), or all dead
        letters when ``items`` is None.

        Guarantees: each redriven item leaves ``dead`` and enters the tail of ``pending`` in the
        same atomic step, with its attempts, last error and acknowledgement reset (it gets the
        full ``max_attempts`` again; ``total`` does not change, ``dead`` goes down and
        ``pending`` up by exactly the number redriven); an item is redriven at most once per
        call even if listed twice; a listed item that is not a dead letter is left where it is
        and reported in ``skipped`` with its state. ``None`` redrives in atomic chunks of
        :data:`MAX_PAGE` until no dead letter is left (items that die again meanwhile are
        redriven too, at most :data:`MAX_REDRIVE_ROUNDS` chunks).
        """
        if items is None:
            redriven = 0
            left = 0
            for _ in range(MAX_REDRIVE_ROUNDS):
                raw = self._run("redrive", self._scripts.redrive, "all", MAX_PAGE)
                redriven += int(raw[0])
                left = int(raw[1])
                if not left or not int(raw[0]):
                    break
            return RedriveResult(redriven, left, {})
        listed = self.validate_items(items)
        redriven, left, skipped = 0, 0, {}
        for start in range(0, max(len(listed), 1), SEED_CHUNK):
            chunk = listed[start : start + SEED_CHUNK]
            if not chunk:
                break
            raw = self._run("redrive", self._scripts.redrive, "items", len(chunk), *chunk)
            redriven += int(raw[0])
            left = int(raw[1])
            skipped.update(self._pairs(raw[2:]))
        return RedriveResult(redriven, left, skipped)

    def in_flight(self, limit: int = 100) -> list[InFlight]:
        """Up to ``limit`` current leases, soonest expiry first."""
        raw = self._run("in_flight", self._scripts.in_flight, int(limit), ensure=False)
        out = []
        for i in range(0, len(raw), 4):
            token = _text(raw[i + 1])
            worker = token.split(":", 1)[1] if ":" in token else ""
            out.append(InFlight(_text(raw[i]), worker, int(raw[i + 2]), int(raw[i + 3]) / 1e6))
        return out

    def next_timer(self) -> float | None:
        """When the queue's earliest timer fires (queue clock, seconds): the soonest lease
        expiry or retry due time; None if no item is leased or waiting for a retry."""
        with translate(self.client, f"queue {self.name}: next_timer"):
            first = self.client.zrange(self.queue_keys.key("timers"), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def succeeded_items(self) -> set[str]:
        """All succeeded items (for tests and small queues)."""
        with translate(self.client, f"queue {self.name}: succeeded_items"):
            return {_text(v) for v in self.client.hkeys(self.queue_keys.key("succeeded"))}

    def keys_in_use(self) -> list[str]:
        """The queue's keys that currently exist."""
        with translate(self.client, f"queue {self.name}: keys"):
            return [k for k in self._keylist if self.client.exists(k)]

    def keys(self) -> list[str]:
        """All key names this queue uses (whether they exist or not)."""
        return list(self._keylist)

    def delete(self) -> int:
        """Remove every key of the queue; returns how many existed."""
        with translate(self.client, f"queue {self.name}: delete"):
            removed = int(self.client.delete(*self._keylist))
        self._config = None
        return removed

    # -- internals ---------------------------------------------------------------------------

    def _check_lease_args(self, worker_id: str, n: int, lease_seconds: float | None) -> None:
        if not isinstance(worker_id, str) or not worker_id:
            raise ValueError(f"worker_id must be a non-empty str, got {worker_id!r}")
        if not 1 <= n <= MAX_LEASE_BATCH:
            raise ValueError(f"n must be in 1..{MAX_LEASE_BATCH}, got {n}")
        if lease_seconds is not None and not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")

    def _nonce(self) -> str:
        return f"{self._nonce_prefix}{next(self._calls):x}"

    def _parse_lease(
        self, reply: Sequence[Any], worker_id: str, nonce: str
    ) -> tuple[list[Lease], float]:
        hint = int(reply[2]) / 1e6
        if len(reply) == 3:
            return [], hint
        expiry = int(reply[1]) / 1e6
        suffix = f":{worker_id}"
        nonce = f"{nonce}@{int(reply[0]) // 1000}"  # the lease time in ms, as lease_items adds it
        items = reply[3::2]
        if items and isinstance(items[0], bytes):
            items = [item.decode("utf-8") for item in items]
        leases = [
            Lease(item, f"{nonce}.{i}{suffix}", attempt, worker_id, expiry)
            for i, (item, attempt) in enumerate(zip(items, reply[4::2], strict=True), start=1)
        ]
        return leases, hint

    @staticmethod
    def _pairs(raw: Sequence[Any]) -> dict[str, str]:
        return {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw), 2)}

    def _run(
        self, what: str, script: Script, *args: Any, now: bool = True, ensure: bool = True
    ) -> Any:
        """Run a queue script (EVALSHA) with the config key as KEYS[1] and the clock as ARGV[1].

        ``ensure``: store the default config first if this object has not loaded one (scripts
        that read the config need it; read-only observers pass False so they create nothing).
        Errors are translated to typed ``QueueError`` subclasses (see ``workqueue.errors``).
        """
        if ensure and self._config is None and what != "configure":
            self._config = self._write_config("default", QueueConfig())
        stamp = "" if self.clock is None or not now else repr(float(self.clock()))
        try:
            if what in _WORKER_CALLS:
                return self._evalsha(what, script, stamp, args)
            try:
                return self._evalsha_pooled(script.sha, stamp, args)
            except redis.exceptions.NoScriptError:
                script.sha = self._load(_text(script.script))
                return self._evalsha_pooled(script.sha, stamp, args)
        except REDIS_ERRORS as exc:
            error = translated(self.client, f"queue {self.name}: {what}", exc)
            if isinstance(error, QueueTypeError):
                raise QueueTypeError(f"{error}{self._type_report()}") from exc
            if "NOCONFIG" in str(exc) and ensure:
                # The queue was deleted under us: store the defaults once and try again.
                self._config = self._write_config("default", QueueConfig())
                return self._run(what, script, *args, now=now, ensure=False)
            raise error from exc

    def _connection(self, node: redis.Redis) -> Connection:
        """This thread's dedicated connection to ``node`` (taken from the node client's pool
        once per thread, process and node; see the module doc)."""
        local = self._local
        conns: dict[int, Connection] | None = getattr(local, "conns", None)
        if conns is None or local.pid != os.getpid():
            conns = local.conns = {}
            local.pid = os.getpid()
        pool = node.connection_pool
        conn = conns.get(id(pool))
        if conn is None:
            conn = pool.get_connection()
            conns[id(pool)] = conn
            with self._conns_lock:
                self._conns.append((pool, conn))
        return conn

    def __enter__(self) -> LeaseQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _evalsha_pooled(self, sha: str, stamp: str, args: tuple[Any, ...]) -> Any:
        """Through the client's pool and retry policy (idempotent and read-only scripts); a
        ``RedisCluster`` routes by the declared keys and follows redirections itself."""
        return self.client.execute_command(  # type: ignore[no-untyped-call]
            "EVALSHA", sha, *self._declared, stamp, *args
        )

    def _evalsha(self, what: str, script: Script, stamp: str, args: tuple[Any, ...]) -> Any:
        """On this thread's dedicated connection to the slot's master, never re-sent (the
        worker calls): ``FCALL`` of the library's function (``scripts.library``), or
        ``EVALSHA`` of the same script while the function cannot be used. Replies that mean
        "not run" (NOSCRIPT, function not found or not permitted, MOVED, ASK, TRYAGAIN,
        CLUSTERDOWN) are followed, up to :data:`MAX_REDIRECTS` times; a broken connection
        raises at once (the call may or may not have run) and refreshes the slot map."""
        ask = ""
        last: redis.exceptions.ResponseError | None = None
        for attempt in range(MAX_REDIRECTS):
            if attempt:
                time.sleep(_pause(attempt))
            node = self._route.at(ask) if ask else self._route.owner()
            conn = self._connection(node)
            functions = self._functions if time.monotonic() >= self._functions_off else None
            if functions is not None:
                command = ("FCALL", functions.function(what), *self._declared, stamp, *args)
            else:
                command = ("EVALSHA", script.sha, *self._declared, stamp, *args)
            try:
                return self._send(conn, command, asking=bool(ask))
            except redis.exceptions.NoScriptError:
                node.script_load(script.script)
                continue
            except redis.exceptions.ResponseError as exc:
                if functions is not None and _function_unusable(exc):
                    self._load_functions(node, functions)
                    continue
                redirect = redirect_of(exc)
                if redirect is None:
                    raise  # an error reply of the script: the connection is still in sync
                last, ask = exc, ""
                if redirect.kind == "ask":
                    ask = redirect.address
                elif redirect.kind in ("moved", "down"):
                    self._route.refresh()
            except BaseException:
                # Reconnects on next use; the command is never re-sent.
                conn.disconnect()  # type: ignore[no-untyped-call]
                self._route.invalidate()
                raise
        raise redis.exceptions.ConnectionError(
            f"slot {self._route.slot} still redirected after {MAX_REDIRECTS} attempts ({last})"
        )

    def _load_functions(self, node: redis.Redis, functions: Library) -> None:
        """A function was missing or not permitted on ``node``: load the library there (the
        operator's user may; a worker's may not) or use the scripts for
        :data:`FUNCTIONS_RETRY_SECONDS` (a Redis restarted without persistence, a new cluster
        node, a worker user made before the functions, a Redis whose admin forbids them)."""
        try:
            node.function_load(functions.code)
        except redis.exceptions.ResponseError as exc:
            if "already exists" not in str(exc):
                self._functions_off = time.monotonic() + FUNCTIONS_RETRY_SECONDS
        except REDIS_ERRORS:
            self._functions_off = time.monotonic() + FUNCTIONS_RETRY_SECONDS

    def _send(self, conn: Connection, command: tuple[Any, ...], *, asking: bool) -> Any:
        """One round trip: [ASKING,] the command [, WAIT]; the command's reply."""
        commands: list[tuple[Any, ...]] = [command]
        if asking:
            commands.insert(0, ("ASKING",))
        if self._wait is not None:
            commands.append(self._wait)
        if len(commands) == 1:
            conn.send_command(*command)  # type: ignore[no-untyped-call]
            return conn.read_response()
        conn.send_packed_command(conn.pack_commands(commands))  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        error: redis.exceptions.ResponseError | None = None
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except redis.exceptions.ResponseError as exc:
                error = error or exc
                replies.append(exc)
        reply = replies[1] if asking else replies[0]
        if error is not None and isinstance(reply, redis.exceptions.ResponseError):
            raise reply
        if error is not None:
            raise error
        if self._wait is not None and int(replies[-1]) < self.wait_replicas:
            raise redis.exceptions.TimeoutError(
                f"ran on the master, but only {replies[-1]} of {self.wait_replicas} replicas "
                f"confirmed it within {self._wait[2]} ms (WAIT)"
            )
        return reply

    def _load(self, source: str) -> str:
        """SCRIPT LOAD (rare: after a server restart or SCRIPT FLUSH)."""
        return _text(self.client.script_load(source))

    def close(self) -> None:
        """Give this queue's dedicated connections back to the client's pool (also done when
        the object is garbage-collected). The queue stays usable."""
        with self._conns_lock:
            _release_all(self._conns)
        self._local = threading.local()

    def _type_report(self) -> str:
        """`` (key K is a string, expected a list; ...)`` for mistyped keys, best effort."""
        try:
            wrong = []
            for (_, expected), key in zip(KEY_TYPES, self._keylist, strict=True):
                actual = _text(self.client.type(key))
                if actual not in ("none", expected):
                    wrong.append(f"{key} is a {actual}, expected a {expected}")
            return f" (mistyped keys: {'; '.join(wrong)})" if wrong else ""
        except redis.exceptions.RedisError:
            return ""
