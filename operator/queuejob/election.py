"""Leader election: several operator processes, exactly one of them reconciling at a time.

Mechanism. A ``coordination.k8s.io/v1`` Lease (default ``queuejob-system/queuejob-operator``)
and the leader-election loop of the official Kubernetes Python client,
``kubernetes.leaderelection.LeaderElection`` (client-go's algorithm: a candidate takes the Lease
when it is absent, released, or has not been renewed for a whole lease duration *as measured on
the candidate's own clock since it last saw it change*; the holder renews it every retry period;
writes are optimistic, so two candidates never win the same version). Why this one:

- kopf's peering is not leader election: every peer keeps running and the one with the lower
  priority pauses when it sees a higher one, with no lease and no bound on overlap; it also needs
  cluster-wide peering CRDs and RBAC;
- the Lease API is what Kubernetes' own controllers (kube-controller-manager, kube-scheduler) and
  client-go, controller-runtime and the Java client use; the Python client's module is the
  maintained Python implementation of it (part of ``kubernetes``, a dependency already; its
  ``kubernetes.aio`` twin is new in the same release and is not used).

That module is a blocking loop with gaps, filled here rather than worked around:

- it runs in a daemon thread; kopf is started in the main thread only once the Lease is held,
  so a standby watches and writes nothing, and kopf's event loop never shares a thread with it;
- the lock is :class:`queuejob.leaselock.LeaseLock` (request timeouts, write fencing, release);
- its renew loop measures with the wall clock and an attempt can outlast the renew deadline, so
  a watchdog thread (monotonic clock) ends the process once no renewal *sent* within the last
  ``renew_deadline`` seconds has succeeded. A standby takes over no earlier than
  ``lease_duration`` after the last renewal it saw, which was sent no earlier than the one the
  watchdog counts from, so with ``renew_deadline < lease_duration`` (enforced by the settings)
  the old leader has exited before the new one starts, give or take the watchdog's 0.1 s period
  and clock-rate differences (not offsets) between the two machines;
- losing the Lease ends the process at once (``os._exit``, exit code 3, as client-go's
  ``OnStoppedLeading`` is conventionally a fatal exit): no graceful kopf shutdown that could
  keep handlers running while the new leader starts. Kubernetes restarts the container, which
  comes back as a standby;
- it never releases the Lease (kubernetes-client/python#1669, #2075): on SIGTERM or SIGINT kopf
  is stopped first, then the lock is fenced and the Lease released, so a standby takes over at
  its next attempt (within ``retry_period``) instead of after ``lease_duration``.

While standby, the process serves its liveness endpoint itself (:mod:`queuejob.standby`) so that
standbys are live (and ready), and its metrics with ``queuejob_leader`` at 0.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

import kubernetes
from kubernetes.leaderelection import electionconfig, leaderelection

from queuejob.leaselock import LeaseLock
from queuejob.settings import OperatorSettings

logger = logging.getLogger("queuejob.election")

#: Exit code of a process that lost (or could not keep) the Lease.
EXIT_LOST_LEADERSHIP = 3
#: How often the watchdog compares the last renewal with the renew deadline.
WATCHDOG_PERIOD = 0.1

#: Messages of ``kubernetes.leaderelection`` repeated at every attempt (every retry period).
_REPEATED = (
    "has successfully acquired lease",
    "yet to finish lease_duration",
    "is a follower",
    "Leader has entered renew loop",
    "successfully acquired lease",
)


def _not_repeated(record: logging.LogRecord) -> bool:
    """Drop the library's per-attempt INFO lines; our own log says when anything changes."""
    message = record.getMessage()
    return record.levelno > logging.INFO or not any(part in message for part in _REPEATED)


def election_identity() -> str:
    """``<pod name>_<8 hex digits>``: ``POD_NAME`` (downward API) or the host name.

    The random part tells two processes with the same pod or host name apart (two operators on
    one machine; in a pod, a restarted container and its predecessor), as client-go does with a
    UUID: a process never mistakes the Lease of another one for its own.
    """
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{secrets.token_hex(4)}"


def _exit_now(reason: str) -> NoReturn:
    logger.critical(f"Leadership lost: {reason}; exiting (code {EXIT_LOST_LEADERSHIP})")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(EXIT_LOST_LEADERSHIP)


class LeaderElector:
    """Runs the election for one process (see the module docstring).

    Guarantees: :attr:`elected` is set only after this process wrote itself into the Lease;
    from then on the process either keeps renewing it within ``renew_deadline`` or ``on_lost``
    is called (default: exit at once); after :meth:`release` this process never writes the Lease
    again.
    """

    def __init__(
        self,
        settings: OperatorSettings,
        identity: str,
        api: kubernetes.client.ApiClient,
        *,
        on_lost: Callable[[str], None] = _exit_now,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        retry = settings.leader_election_retry_period
        self.lock = LeaseLock(
            api,
            settings.leader_election_namespace,
            settings.leader_election_name,
            identity,
            request_timeout=retry,
        )
        self.elected = threading.Event()
        self._on_lost = on_lost
        self._on_change = on_change
        self._stopping = threading.Event()
        self._config = electionconfig.Config(  # type: ignore[no-untyped-call]
            self.lock,
            settings.leader_election_lease_duration,
            settings.leader_election_renew_deadline,
            retry,
            onstarted_leading=self._started_leading,
            onstopped_leading=lambda: None,  # run() returns: handled in _run
        )
        logging.getLogger("leaderelection").addFilter(_not_repeated)

    def start(self) -> None:
        """Start campaigning in a daemon thread."""
        logger.info(
            f"Leader election: Lease {self.lock.ref} as {self.identity} "
            f"(lease {self.settings.leader_election_lease_duration}s, "
            f"renew deadline {self.settings.leader_election_renew_deadline}s, "
            f"retry {self.settings.leader_election_retry_period}s); standby until elected"
        )
        threading.Thread(target=self._run, name="leader-election", daemon=True).start()

    def release(self) -> bool:
        """Stop the watchdog, fence the lock and give the Lease up (idempotent)."""
        self._stopping.set()
        released = self.lock.release()
        if released:
            logger.info(f"Released the Lease {self.lock.ref}")
        self._on_change(False)
        return released

    def _run(self) -> None:
        try:
            leaderelection.LeaderElection(self._config).run()  # type: ignore[no-untyped-call]
        except BaseException as exc:
            self._lost(f"the election thread failed: {type(exc).__name__}: {exc}")
        else:  # run() returns only after failing to renew within the renew deadline
            self._lost("the Lease could not be renewed within the renew deadline")

    def _started_leading(self) -> None:
        logger.info(f"Became the leader: Lease {self.lock.ref} held by {self.identity}")
        self._on_change(True)
        self.elected.set()
        threading.Thread(target=self._watchdog, name="leader-watchdog", daemon=True).start()

    def check(self) -> None:
        """Call ``on_lost`` (exit) now if the last renewal was sent over a renew deadline ago.

        The operator calls it before every handler (``memo.check_leadership``): after a stall
        (a paused process, a long GC, SIGSTOP) no handler starts before the watchdog's next tick.
        """
        sent = self.lock.last_write
        deadline = self.settings.leader_election_renew_deadline
        if self.elected.is_set() and (sent is None or time.monotonic() - sent > deadline):
            self._lost(f"no renewal of the Lease succeeded within {deadline}s")

    def _watchdog(self) -> None:
        deadline = self.settings.leader_election_renew_deadline
        while not self._stopping.wait(WATCHDOG_PERIOD):
            sent = self.lock.last_write
            if sent is None or time.monotonic() - sent > deadline:
                self._lost(f"no renewal of the Lease succeeded within {deadline}s")
                return

    def _lost(self, reason: str) -> None:
        if self._stopping.is_set():
            return  # a graceful shutdown released (or is releasing) the Lease
        self._on_change(False)
        self._on_lost(reason)


def run_elected(
    settings: OperatorSettings,
    run_operator: Callable[[threading.Event, Callable[[], None]], None],
    *,
    api: kubernetes.client.ApiClient,
    on_change: Callable[[bool], None],
    standby_probe: Callable[[LeaderElector], Callable[[], None]] | None = None,
) -> int:
    """Campaign, then ``run_operator(stop_flag, check)`` (kopf) while leading; return an exit code.

    ``check`` is :meth:`LeaderElector.check`, for the operator to call before each handler.

    ``standby_probe(elector)`` starts the standby's liveness endpoint and returns its stop
    function; it is stopped just before the operator starts (which then serves it). SIGTERM
    and SIGINT set ``stop_flag``: a standby exits 0 at once; a leader stops the operator (kopf
    watches the flag as well as the signals), then releases the Lease and exits 0.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info(f"Signal {signal.Signals(signum).name}: stopping")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    elector = LeaderElector(settings, election_identity(), api, on_change=on_change)
    stop_probe = standby_probe(elector) if standby_probe else None
    elector.start()
    try:
        while not stop.is_set() and not elector.elected.wait(0.2):
            pass
    finally:
        if stop_probe is not None:
            stop_probe()
    if stop.is_set():
        elector.release()
        logger.info("Stopped (standby)" if not elector.elected.is_set() else "Stopped")
        return 0
    try:
        run_operator(stop, elector.check)
    finally:
        elector.release()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
