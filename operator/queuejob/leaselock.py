"""The leader election's lock: one ``coordination.k8s.io/v1`` Lease, shaped as
``kubernetes.leaderelection`` expects a lock (``name``, ``namespace``, ``identity``, ``get``,
``create``, ``update``).

The library's own ``LeaseLock`` is not used because this one adds what the operator's safety
argument needs (see ``queuejob.election``):

- it talks through the API client it is given (the operator's kubeconfig or in-cluster config,
  its own connection pool) with a timeout on every request, so a hung request cannot stall the
  election; any error (API, network, timeout) is reported to the library as a failed attempt
  instead of ending its thread;
- :attr:`LeaseLock.last_write` is the monotonic time at which the last successful write of this
  holder was *sent*: the Lease cannot have been renewed by this process later than that, so a
  watchdog comparing it with the renew deadline errs on the safe side;
- :meth:`LeaseLock.release` fences the lock (every later ``create``/``update`` fails without a
  request, so the library's renew loop cannot take the Lease back) and then gives the Lease up
  the way client-go's ``ReleaseOnCancel`` does: no holder, ``leaseDurationSeconds: 1``;
- writes are optimistic: ``update`` replaces the Lease read by the preceding ``get`` with its
  ``resourceVersion``, so two candidates can never both win the same Lease version (the loser
  gets 409 Conflict); ``spec.leaseTransitions`` counts changes of holder.

API calls (for RBAC): leases get, create, update, in one namespace, on one name.
"""

from __future__ import annotations

import copy
import datetime
import logging
import threading
import time
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord

logger = logging.getLogger("queuejob.election")


def _instant(text: str | None) -> datetime.datetime | None:
    """A record time (``str(datetime)``, naive = local time, as the library writes it) in UTC."""
    if not text:
        return None
    value = datetime.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.astimezone()
    return value.astimezone(datetime.UTC)


def _failure(exc: BaseException) -> ApiException:
    """``exc`` as the ApiException the library expects from a failed ``get`` (never a 404)."""
    if isinstance(exc, ApiException):
        return exc
    return ApiException(status=0, reason=f"{type(exc).__name__}: {exc}")


class LeaseLock:
    """One Lease (``namespace/name``) held under ``identity``; see the module docstring."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        request_timeout: float,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._coordination = kubernetes.client.CoordinationV1Api(api)
        self._timeout = request_timeout
        self._mutex = threading.Lock()
        self._lease: Any = None  # the V1Lease of the last get or successful write
        self._fenced = False
        #: monotonic time at which this holder's last successful write was sent (None: never)
        self.last_write: float | None = None
        #: the holder seen by the last successful read (None: nobody)
        self.observed_holder: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    # -- the interface of kubernetes.leaderelection ---------------------------------------------

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        """``(True, record)`` of the Lease, or ``(False, ApiException)`` (404: no such Lease)."""
        try:
            lease = self._coordination.read_namespaced_lease(
                name, namespace, _request_timeout=self._timeout
            )
        except Exception as exc:
            return False, _failure(exc)
        spec = lease.spec
        holder = (spec.holder_identity if spec else None) or None
        if holder != self.observed_holder:
            logger.info(f"Lease {self.ref}: held by {holder or 'nobody'}")
        self.observed_holder = holder
        with self._mutex:
            self._lease = lease
        record = LeaderElectionRecord(  # type: ignore[no-untyped-call]
            holder,
            str(spec.lease_duration_seconds) if spec and spec.lease_duration_seconds else None,
            str(spec.acquire_time) if spec and spec.acquire_time else None,
            str(spec.renew_time) if spec and spec.renew_time else None,
        )
        return True, record

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        """Create the Lease held by ``election_record``; False if it exists or on any error."""
        body = kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=namespace),
            spec=self._spec(election_record, None),
        )
        return self._write(lambda: self._coordination.create_namespaced_lease(
            namespace, body, _request_timeout=self._timeout
        ))  # fmt: skip

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        """Replace the Lease read last with ``updated_record``; False on conflict or error."""
        with self._mutex:
            current = self._lease
        if current is None:
            return False
        body = copy.deepcopy(current)
        body.spec = self._spec(updated_record, current.spec)
        return self._write(lambda: self._coordination.replace_namespaced_lease(
            name, namespace, body, _request_timeout=self._timeout
        ))  # fmt: skip

    # -- beyond the library ---------------------------------------------------------------------

    def release(self) -> bool:
        """Fence the lock, then give the Lease up if this process still holds it.

        Returns True if the Lease was released (a standby may take it at its next attempt).
        """
        with self._mutex:
            self._fenced = True
            current = self._lease
            if current is None or current.spec is None:
                return False
            if current.spec.holder_identity != self.identity:
                return False
            body = copy.deepcopy(current)
            now = datetime.datetime.now(datetime.UTC)
            body.spec.holder_identity = None
            body.spec.lease_duration_seconds = 1
            body.spec.acquire_time = now
            body.spec.renew_time = now
            try:
                self._coordination.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=self._timeout
                )
            except Exception as exc:
                logger.warning(f"Lease {self.ref}: could not release it: {exc}")
                return False
            return True

    def _spec(self, record: Any, current: Any) -> kubernetes.client.V1LeaseSpec:
        previous = current.holder_identity if current is not None else None
        transitions = (current.lease_transitions or 0) if current is not None else 0
        if previous and previous != record.holder_identity:
            transitions += 1
        return kubernetes.client.V1LeaseSpec(
            holder_identity=record.holder_identity,
            lease_duration_seconds=int(record.lease_duration),
            acquire_time=_instant(record.acquire_time),
            renew_time=_instant(record.renew_time),
            lease_transitions=transitions,
        )

    def _write(self, call: Any) -> bool:
        """Run one write unless fenced; on success remember the Lease and when it was sent."""
        with self._mutex:
            if self._fenced:
                return False
            sent = time.monotonic()
            try:
                written = call()
            except ApiException as exc:
                if exc.status != 409:  # 409: another candidate won this version; expected
                    logger.warning(f"Lease {self.ref}: write refused: {exc.status} {exc.reason}")
                return False
            except Exception as exc:
                logger.warning(f"Lease {self.ref}: write failed: {type(exc).__name__}: {exc}")
                return False
            self._lease = written
            self.last_write = sent
            self.observed_holder = self.identity
            return True
