"""A cache of the worker Jobs, fed by the operator's watch of them, so that a status refresh
reads its Job without an API request.

Filled by the watch-event handler of the worker Jobs (``queuejob.handlers.events``) and by the
objects the API returns to the operator's own writes and reads (create, patch, get): one way,
API -> handler -> cache -> refresh; nothing here makes a request but :meth:`JobCache.read`'s
fallback GET. Guarantees:

- only Jobs carrying the label ``workqueue.example.com/queuejob`` are kept, keyed by
  (namespace, name): a lookup names its namespace, so a QueueJob never sees another
  namespace's Job; with ``owner`` it sees only a Job whose owner reference has that QueueJob's
  uid (never the Job of an earlier QueueJob of the same name);
- per key, the object with the highest ``resourceVersion`` wins (resourceVersions of one
  resource type share the etcd revision, so they also order a re-created Job after the deleted
  one): an older watch event or a write's response that comes back late never replaces a
  newer object;
- a DELETED event removes the Job it names (by uid) and leaves a tombstone, so that a response
  older than the deletion cannot bring the Job back; a Job of another uid with a higher
  resourceVersion (the Job re-created with the same name) is kept;
- a kept object is trusted for ``max_age`` seconds after the watch (or a response) last
  confirmed it; after that a lookup misses and :meth:`JobCache.read` GETs it again. kopf's
  watch re-lists after "410 Gone" without DELETED events for what went away meanwhile: this
  bounds how long such a missed deletion can hide a Job deleted by hand;
- a kept Job is the API's object cut to what the operator reads from one: its identity and
  owner references (``metadata``: name, namespace, uid, resourceVersion, generation, labels,
  ownerReferences, creation and deletion timestamps), its ``spec`` but for the pod template, of
  which only the containers' names and their environment variables' names are kept (enough to
  tell whether its workers log in as the QueueJob's user), and its whole ``status``
  (managedFields and the pod template are most of a Job's memory). A caller that needs more
  reads the Job with ``fresh=True``. A kept Job is packed as JSON bytes
  (:mod:`queuejob.packing`: about a third of its size as Python objects); a lookup unpacks a
  new copy (callers may modify it).

A miss (not seen yet, e.g. right after the operator created the Job; expired; another owner)
is not an answer: :meth:`JobCache.read` then GETs the Job and keeps what it gets. Callers that
are about to write to a Job on the strength of what they read (delete, re-create, patch) read
it with ``fresh=True``: a stale object must never decide a write.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from queuejob import kube, naming
from queuejob.packing import pack, unpack

#: Seconds a kept Job is trusted without a watch event or response confirming it.
MAX_AGE = 1800.0

#: Seconds a deletion's tombstone is kept (longer than any API call a response can come from).
TOMBSTONE_SECONDS = 300.0

Key = tuple[str, str]


def _version(obj: Mapping[str, Any]) -> int | None:
    """The object's resourceVersion as a number, or None if it has none that is a number."""
    try:
        return int(str((obj.get("metadata") or {}).get("resourceVersion")))
    except (TypeError, ValueError):
        return None


def _older(version: int | None, than: int | None) -> bool:
    """True if ``version`` is known to be older than ``than`` (unknown ones are not)."""
    return version is not None and than is not None and version < than


#: The metadata fields a kept Job keeps.
_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "labels",
    "ownerReferences",
    "creationTimestamp",
    "deletionTimestamp",
)


def _trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` cut to what the operator reads from a Job (see the module doc)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    containers = [
        {"name": c.get("name"), "env": [{"name": e.get("name")} for e in c.get("env") or []]}
        for c in pod.get("containers") or []
    ]
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in _METADATA if k in meta},
        "spec": {
            **{k: v for k, v in spec.items() if k != "template"},
            "template": {"spec": {"containers": containers}},
        },
        "status": obj.get("status") or {},
    }


def _owners(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The uids of ``obj``'s owner references."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return tuple(str(ref["uid"]) for ref in refs if isinstance(ref, dict) and ref.get("uid"))


@dataclasses.dataclass(slots=True)
class _Entry:
    job: bytes  # packed (queuejob.packing)
    owners: tuple[str, ...]
    uid: str
    version: int | None
    confirmed: float


class JobCache:
    """The worker Jobs by (namespace, name), as the watch last showed them (see the module doc).

    Only used from the event loop's thread (no locking).
    """

    def __init__(
        self, max_age: float = MAX_AGE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = max_age
        self.clock = clock
        self._entries: dict[Key, _Entry] = {}
        #: the resourceVersion of each recent deletion and when it was seen, oldest first
        self._tombstones: dict[Key, tuple[int, float]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _identify(obj: Mapping[str, Any]) -> tuple[Key, str] | None:
        """(namespace, name) and uid of a worker Job; None for anything else."""
        meta = obj.get("metadata") or {}
        namespace, name, uid = meta.get("namespace"), meta.get("name"), meta.get("uid")
        if not (namespace and name and uid):
            return None
        if naming.QUEUEJOB_LABEL not in (meta.get("labels") or {}):
            return None
        return (str(namespace), str(name)), str(uid)

    # -- filling -----------------------------------------------------------------------------

    def observe(self, raw: Mapping[str, Any], event_type: str | None) -> None:
        """A watch event of a worker Job (type ADDED, MODIFIED, DELETED, or None when listed)."""
        if event_type == "DELETED":
            self._deleted(raw)
        else:
            self.keep(raw)

    def keep(self, job: Mapping[str, Any] | None) -> None:
        """Keep ``job`` (from a watch event or the response of a create, patch or get) unless
        what is kept under its name is newer, or the Job was deleted after it."""
        if job is None:
            return
        identity = self._identify(job)
        if identity is None:
            return
        key, uid = identity
        version = _version(job)
        tombstone = self._tombstones.get(key)
        if tombstone is not None and version is not None and version <= tombstone[0]:
            return  # from before a deletion already seen
        entry = self._entries.get(key)
        now = self.clock()
        if entry is not None:
            if _older(version, entry.version):
                return
            if entry.uid == uid and version is not None and version == entry.version:
                entry.confirmed = now  # the same object again (a re-list)
                return
        self._entries[key] = _Entry(pack(_trimmed(job)), _owners(job), uid, version, now)
        if tombstone is not None:
            del self._tombstones[key]

    def _deleted(self, raw: Mapping[str, Any]) -> None:
        identity = self._identify(raw)
        if identity is None:
            return
        key, uid = identity
        version = _version(raw)
        entry = self._entries.get(key)
        if entry is not None and entry.uid != uid and not _older(entry.version, version):
            return  # a newer Job of the same name (re-created) is kept
        self._entries.pop(key, None)
        now = self.clock()
        self._prune(now)
        if version is not None:
            previous = self._tombstones.pop(key, None)
            self._tombstones[key] = (max(version, previous[0] if previous else version), now)

    def _prune(self, now: float) -> None:
        """Drop tombstones older than :data:`TOMBSTONE_SECONDS` (they are oldest first)."""
        while self._tombstones:
            key, (_, seen) = next(iter(self._tombstones.items()))
            if now - seen < TOMBSTONE_SECONDS:
                return
            del self._tombstones[key]

    def discard(self, namespace: str, name: str, *, before: float) -> None:
        """A GET started at ``before`` (this cache's clock) found no Job ``name``: drop what is
        kept unless a watch event or response confirmed it after that."""
        key = (namespace, name)
        entry = self._entries.get(key)
        if entry is not None and entry.confirmed <= before:
            del self._entries[key]

    # -- reading -----------------------------------------------------------------------------

    def get(self, namespace: str, name: str, *, owner: str | None = None) -> dict[str, Any] | None:
        """A copy of the kept Job ``namespace/name``; None if none is kept, it is older than
        ``max_age``, or (with ``owner``) no owner reference of it has the uid ``owner``."""
        entry = self._entries.get((namespace, name))
        if entry is None or self.clock() - entry.confirmed > self.max_age:
            self.misses += 1
            return None
        if owner is not None and owner not in entry.owners:
            self.misses += 1
            return None
        self.hits += 1
        return cast(dict[str, Any], unpack(entry.job))

    async def read(
        self, namespace: str, name: str, *, owner: str | None = None, fresh: bool = False
    ) -> dict[str, Any] | None:
        """The Job ``namespace/name``: the kept one (see :meth:`get`), else (or with ``fresh``)
        from the API (a GET), which is then kept; None if it does not exist."""
        if not fresh:
            cached = self.get(namespace, name, owner=owner)
            if cached is not None:
                return cached
        started = self.clock()
        job = await kube.read_job(namespace, name)
        if job is None:
            self.discard(namespace, name, before=started)
        else:
            self.keep(job)
        return job


__all__ = ["MAX_AGE", "JobCache"]
