"""The built-in worker (``queuejob worker``), run by the pods of a QueueJob's Job.

Loop: lease one item, process it while a heartbeat thread renews the lease, then complete it
(or fail it with the error, which retries it with backoff or dead-letters it). Guarantees:

- exits 0 only when the queue is done (nothing pending, delayed or leased), so the Job (Indexed,
  one index per worker) succeeds exactly when the work is finished;
- on SIGTERM/SIGINT it stops the current item, *releases* its lease (the item is pending again
  at once, no attempt counted) and exits 143; a SIGKILLed worker's lease simply expires;
- a per-item command never outlives its worker: it runs under an item guard
  (:mod:`queuejob.itemproc`) that kills it, its process group and every other descendant when
  the worker dies, even of SIGKILL; on SIGTERM the command gets SIGTERM, then SIGKILL after the
  guard's grace period (10 s), well within the pod's 30 s;
- a worker that loses an item's lease (a renewal finds the lease taken or gone) kills the item's
  command at once and reports no result for that item (it belongs to whoever holds it now);
- Redis outages are waited out with capped, jittered backoff instead of crashing the pod;
- an acknowledgement (complete or fail) that cannot reach Redis is re-sent with the same lease
  token, with capped backoff, for as long as the lease is valid (its last confirmed expiry, on
  the worker's monotonic clock): acknowledgements are idempotent, so a Redis restart or
  failover shorter than the lease costs no re-run of the item. Past the lease the worker gives
  the result up (the item comes back after expiry, as a counted retry). It does not renew the
  lease meanwhile: a renewal needs Redis as much as the acknowledgement, and the first call that
  reaches Redis is then the acknowledgement itself, which ends the lease.

Redis: the worker logs in as ``QUEUEJOB_REDIS_USERNAME`` (its QueueJob's own ACL user, when set)
with ``QUEUEJOB_REDIS_PASSWORD``, both from the QueueJob's Secret. ``QUEUEJOB_REDIS_URL`` is
``redis://...`` (one server) or ``redis+cluster://host:port`` (a Redis Cluster: the worker
follows slot moves and failovers by itself). With
``QUEUEJOB_REDIS_WAIT_REPLICAS=N`` every queue call returns only after N replicas have its effect
(``WAIT``), so a completion the worker logged survives a failover (see docs/guarantees.md).

Processing an item: with ``QUEUEJOB_ITEM_COMMAND`` (a JSON list, from ``spec.worker.command``)
the command runs with the item in ``QUEUEJOB_ITEM``; exit 0 is success, otherwise the last line
of its stderr is the error. Without it, the built-in demo work sleeps
``QUEUEJOB_DEMO_WORK_SECONDS`` (default 0.1); items starting with ``fail-once`` fail on their
first attempt, items starting with ``poison`` always fail, except those listed (comma-separated)
in ``QUEUEJOB_DEMO_FIXED_ITEMS``: the demo's "fix" before a redrive.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TypeVar

from queuejob import redisconn, wording
from queuejob.itemproc import ItemProcess
from workqueue.backoff import exponential_delay
from workqueue.errors import (
    REDIS_ERRORS,
    QueueAuthError,
    QueueUnavailableError,
    StaleLeaseError,
)
from workqueue.models import Lease
from workqueue.redisqueue import LeaseQueue
from workqueue.routing import RedisClient

log = logging.getLogger("queuejob.worker")
T = TypeVar("T")

EXIT_DONE = 0
EXIT_TERMINATED = 143
EXIT_CONFIG = 2
#: Backoff of a re-sent acknowledgement (seconds): first pause, longest pause.
ACK_RETRY_BASE = 0.05
ACK_RETRY_CAP = 2.0


class ItemFailed(Exception):
    """Processing an item failed; the message is recorded as the item's error."""


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """Worker settings from the environment set by the operator's Job."""

    redis_url: str
    redis_password: str | None
    queue: str
    worker_id: str
    lease_seconds: float | None
    command: tuple[str, ...] | None
    demo_work_seconds: float
    redis_timeout: float = 5.0
    wait_replicas: int = 0
    demo_fixed_items: frozenset[str] = frozenset()
    redis_username: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        """Read ``QUEUEJOB_*``; raises ValueError naming the variable on bad input."""
        env = os.environ if env is None else env
        url = env.get("QUEUEJOB_REDIS_URL", "")
        queue = env.get("QUEUEJOB_QUEUE", "")
        if not url:
            raise ValueError("QUEUEJOB_REDIS_URL is not set")
        if not queue:
            raise ValueError("QUEUEJOB_QUEUE is not set")
        command: tuple[str, ...] | None = None
        raw_command = env.get("QUEUEJOB_ITEM_COMMAND")
        if raw_command:
            try:
                parsed = json.loads(raw_command)
            except json.JSONDecodeError as exc:
                raise ValueError(f"QUEUEJOB_ITEM_COMMAND is not JSON: {exc}") from None
            if (
                not isinstance(parsed, list)
                or not parsed
                or not all(isinstance(p, str) for p in parsed)
            ):
                raise ValueError("QUEUEJOB_ITEM_COMMAND must be a JSON list of strings")
            command = tuple(parsed)

        def number(name: str, default: str) -> float:
            try:
                value = float(env.get(name) or default)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {env.get(name)!r}") from None
            if value < 0:
                raise ValueError(f"{name} must be >= 0")
            return value

        lease = env.get("QUEUEJOB_LEASE_SECONDS")
        return cls(
            redis_url=url,
            redis_password=env.get("QUEUEJOB_REDIS_PASSWORD") or None,
            redis_username=env.get("QUEUEJOB_REDIS_USERNAME") or None,
            queue=queue,
            worker_id=env.get("QUEUEJOB_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
            lease_seconds=number("QUEUEJOB_LEASE_SECONDS", "30") if lease else None,
            command=command,
            demo_work_seconds=number("QUEUEJOB_DEMO_WORK_SECONDS", "0.1"),
            redis_timeout=number("QUEUEJOB_REDIS_TIMEOUT", "5"),
            wait_replicas=int(number("QUEUEJOB_REDIS_WAIT_REPLICAS", "0")),
            demo_fixed_items=frozenset(
                i.strip() for i in env.get("QUEUEJOB_DEMO_FIXED_ITEMS", "").split(",") if i.strip()
            ),
        )


class Heartbeat:
    """Renews a lease every ``period`` seconds in a thread until stopped.

    When a renewal finds the lease lost (:class:`StaleLeaseError`), :attr:`lost` holds the
    reason, ``on_lost`` is called (in the heartbeat thread) and renewals stop.
    """

    def __init__(
        self,
        queue: LeaseQueue,
        lease: Lease,
        period: float,
        on_lost: Callable[[], None] | None = None,
        *,
        lease_seconds: float | None = None,
    ) -> None:
        self._queue = queue
        self._lease = lease
        self._period = max(period, 0.05)
        self._stop = threading.Event()
        self._on_lost = on_lost
        self.lost: str | None = None
        lease_seconds = period * 3 if lease_seconds is None else lease_seconds
        self._lease_seconds = lease_seconds
        #: Monotonic time until which the lease is known valid: the lease length after the
        #: start (the lease was taken just before) or after the last renewal's request was sent.
        self.valid_until = time.monotonic() + lease_seconds
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                sent = time.monotonic()
                self._queue.renew(self._lease, self._lease_seconds)
                self.valid_until = sent + self._lease_seconds
            except StaleLeaseError as exc:
                self.lost = str(exc)
                log.warning(f"lost the lease on {self._lease.item!r}: {exc.reason}")
                if self._on_lost is not None:
                    self._on_lost()
                return
            except (QueueUnavailableError, QueueAuthError) as exc:
                log.warning(f"heartbeat for {self._lease.item!r} failed, will retry: {exc}")


class Worker:
    """One worker process; :meth:`run` returns the exit code."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.stopping = threading.Event()
        client = self._connect()
        # WAIT blocks up to wait_timeout inside a call: keep it below the socket timeout.
        self.queue = LeaseQueue(
            client,
            config.queue,
            wait_replicas=config.wait_replicas,
            wait_timeout=max(0.1, config.redis_timeout / 2),
        )
        self._child: ItemProcess | None = None
        self._item_lost = threading.Event()
        self.processed = 0

    def _connect(self) -> RedisClient:
        """The worker's Redis client, retried with capped backoff while Redis cannot be reached.

        A Redis Cluster client reads the slot map as it is made, so it fails when no node
        answers: during a failover, or while the node behind the cluster's address lacks the
        QueueJob's user (restarted without its ACL file; the operator's next refresh puts the
        user back). Failing the pod for that would use up its index's retries; nothing is held
        yet, so waiting is safe, and SIGTERM still ends the process at once."""
        config = self.config
        failures = 0
        while True:
            try:
                return redisconn.client(
                    config.redis_url,
                    config.redis_password,
                    config.redis_timeout,
                    config.redis_username,
                )
            except REDIS_ERRORS as exc:
                self._back_off(failures, f"cannot connect: {exc}")
                failures += 1

    def _back_off(self, failures: int, problem: str) -> None:
        """Wait before the next try after ``failures`` failed ones in a row (capped exponential
        backoff with jitter), or until a stop is asked for."""
        delay = exponential_delay(failures, 0.5, 10.0, 0.2)
        log.warning(f"Redis problem, retrying in {delay:.1f}s: {problem}")
        self.stopping.wait(delay)

    def stop(self, signum: int, _frame: FrameType | None = None) -> None:
        """Signal handler: stop after giving the current item back."""
        log.info(f"signal {signum}: releasing the lease and exiting")
        self.stopping.set()
        child = self._child
        if child is not None:
            child.terminate()

    def _lease_lost(self) -> None:
        """Heartbeat callback: the item is someone else's now; kill its command at once."""
        self._item_lost.set()
        child = self._child
        if child is not None:
            child.abort()

    def _process(self, lease: Lease) -> None:
        """Do the work for one item; raises :class:`ItemFailed` on failure."""
        if self.config.command is None:
            self._item_lost.wait(self.config.demo_work_seconds)
            if lease.item.startswith("poison") and lease.item not in self.config.demo_fixed_items:
                raise ItemFailed(f"poison item {lease.item!r} always fails")
            if lease.item.startswith("fail-once") and lease.attempt == 1:
                raise ItemFailed(f"item {lease.item!r} fails on its first attempt")
            return
        env = {**os.environ, "QUEUEJOB_ITEM": lease.item, "QUEUEJOB_ATTEMPT": str(lease.attempt)}
        try:
            child = ItemProcess(self.config.command, env)
        except OSError as exc:
            raise ItemFailed(f"cannot run {self.config.command[0]!r}: {exc}") from None
        self._child = child
        if self.stopping.is_set():  # a signal arrived before _child was set
            child.terminate()
        if self._item_lost.is_set():
            child.abort()
        try:
            returncode, stderr = child.wait()
        finally:
            self._child = None
        if stderr:
            sys.stderr.write(stderr)
            sys.stderr.flush()
        if returncode != 0:
            lines = [line for line in stderr.splitlines() if line.strip()]
            last = lines[-1].strip() if lines else ""
            raise ItemFailed(f"exit code {returncode}" + (f": {last}" if last else ""))

    def _handle(self, lease: Lease, lease_seconds: float) -> None:
        started = time.monotonic()
        self._item_lost.clear()
        with Heartbeat(
            self.queue, lease, lease_seconds / 3, self._lease_lost, lease_seconds=lease_seconds
        ) as heartbeat:
            try:
                self._process(lease)
                error = None
            except ItemFailed as exc:
                error = str(exc)
        took = time.monotonic() - started
        if heartbeat.lost is not None:
            log.warning(
                f"item {lease.item!r} (attempt {lease.attempt}): lease lost, its command was "
                f"stopped and no result is reported ({heartbeat.lost})"
            )
            return
        if self.stopping.is_set():
            try:
                self.queue.release(lease)
                log.info(f"released {lease.item!r} (attempt {lease.attempt})")
            except StaleLeaseError:
                pass
            return
        try:
            if error is None:
                done = self._acknowledge(
                    lambda: self._complete(lease), lease, heartbeat.valid_until
                )
                if done is None:
                    return
                self.processed += 1
                log.info(f"item {lease.item!r} done (attempt {lease.attempt}, {took:.2f}s)")
            else:
                failed = error
                result = self._acknowledge(
                    lambda: self.queue.fail(lease, failed), lease, heartbeat.valid_until
                )
                if result is None:
                    return
                what = "dead-lettered" if result.dead else "will be retried"
                log.warning(
                    f"item {lease.item!r} failed (attempt {lease.attempt}): {error}; {what}"
                )
        except StaleLeaseError as exc:
            log.warning(
                f"item {lease.item!r}: result dropped, {exc.reason}"
                + (f" ({heartbeat.lost})" if heartbeat.lost else "")
            )

    def _complete(self, lease: Lease) -> bool:
        self.queue.complete(lease)
        return True

    def _acknowledge(self, what: Callable[[], T], lease: Lease, valid_until: float) -> T | None:
        """Run the acknowledgement ``what`` (complete or fail of ``lease``), re-sending it with
        capped backoff while Redis is unreachable and the lease is valid (until
        ``valid_until``, monotonic). Returns its result, or None when the lease ran out first
        (the result is given up). Re-sending is safe: the queue accepts a repeated
        acknowledgement with the same token, and refuses one whose lease is gone."""
        tries = 0
        while True:
            try:
                return what()
            except (QueueUnavailableError, QueueAuthError) as exc:
                tries += 1
                left = valid_until - time.monotonic()
                if left <= 0:
                    log.warning(
                        f"item {lease.item!r}: result given up, Redis was unreachable until "
                        f"the lease ran out ({tries} tries): {exc}"
                    )
                    return None
                delay = min(exponential_delay(tries - 1, ACK_RETRY_BASE, ACK_RETRY_CAP, 0.2), left)
                log.warning(
                    f"item {lease.item!r}: acknowledgement not delivered, re-sending in "
                    f"{delay:.2f}s (lease valid {left:.1f}s more): {exc}"
                )
                time.sleep(delay)

    def run(self) -> int:
        """Process items until the queue is done (0) or a signal arrives (143)."""
        log.info(f"worker {self.config.worker_id} on queue {self.config.queue}")
        failures = 0
        last_reap = time.monotonic()
        while not self.stopping.is_set():
            try:
                leases = self.queue.lease(
                    self.config.worker_id,
                    n=1,
                    lease_seconds=self.config.lease_seconds,
                    timeout=1.0,
                )
                failures = 0
                if not leases:
                    if self.queue.done():
                        done = wording.count(self.processed, "item")
                        log.info(f"queue done; processed {done}; exiting")
                        return EXIT_DONE
                    period = self.config.lease_seconds or 30.0
                    if time.monotonic() - last_reap > period / 2:
                        last_reap = time.monotonic()
                        reaped = self.queue.reap()
                        if reaped:
                            log.info(f"reaped {wording.count(reaped, 'expired lease')}")
                    continue
                lease_seconds = self.config.lease_seconds or self.queue.config.lease_seconds
                self._handle(leases[0], lease_seconds)
            except (QueueUnavailableError, QueueAuthError) as exc:
                self._back_off(failures, str(exc))
                failures += 1
        log.info(f"stopped; processed {wording.count(self.processed, 'item')}")
        return EXIT_TERMINATED


def main() -> int:
    """Entry point of ``queuejob worker``."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = WorkerConfig.from_env()
    except ValueError as exc:
        log.error(f"bad worker configuration: {exc}")
        return EXIT_CONFIG
    worker = Worker(config)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    return worker.run()
