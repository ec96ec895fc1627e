"""The latest body of every QueueJob the refresher knows, slim and packed.

A kept body leaves out what a refresh never reads and what is most of a QueueJob's memory:
``metadata.managedFields`` and :data:`UNREAD_ANNOTATIONS` (kubectl's and kopf's copies of the
spec). What is left is packed as JSON bytes (:mod:`queuejob.packing`), about 1.3 KiB for a
QueueJob of a few items.

Guarantees:

- a lookup gives a new dict equal to the slim body (callers may modify it);
- the object given to :meth:`KeptBodies.put` is never modified;
- :meth:`KeptBodies.version` answers without unpacking (the watch and the refresher's own
  patches compare resourceVersions on every event).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

from queuejob import naming
from queuejob.packing import pack, unpack

#: Annotations a refresh never reads, each a whole copy of the spec as JSON.
UNREAD_ANNOTATIONS = frozenset(
    {"kubectl.kubernetes.io/last-applied-configuration", naming.DIFFBASE_ANNOTATION}
)


def slim(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` without what a refresh never reads: ``metadata.managedFields`` and
    :data:`UNREAD_ANNOTATIONS` (shallow: the rest is shared with ``raw``, which is not
    modified)."""
    meta = raw.get("metadata") or {}
    kept_meta = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and not UNREAD_ANNOTATIONS.isdisjoint(annotations):
        kept_meta["annotations"] = {
            k: v for k, v in annotations.items() if k not in UNREAD_ANNOTATIONS
        }
    return {**{k: v for k, v in raw.items() if k != "metadata"}, "metadata": kept_meta}


def resource_version(raw: Mapping[str, Any]) -> int:
    """``metadata.resourceVersion`` as a number (0 when missing or not a number)."""
    try:
        return int(raw.get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class KeptBodies(Mapping[str, dict[str, Any]]):
    """QueueJob uid -> its latest slim body, packed (see the module doc)."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[int, bytes]] = {}

    def __getitem__(self, uid: str) -> dict[str, Any]:
        return cast(dict[str, Any], unpack(self._kept[uid][1]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._kept)

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, uid: object) -> bool:
        return uid in self._kept

    def version(self, uid: str) -> int | None:
        """The resourceVersion of the kept body of ``uid`` (None if none is kept)."""
        kept = self._kept.get(uid)
        return None if kept is None else kept[0]

    def put(self, uid: str, raw: Mapping[str, Any]) -> None:
        """Keep the slim body of ``raw`` as the body of ``uid``."""
        self._kept[uid] = (resource_version(raw), pack(slim(raw)))

    def discard(self, uid: str) -> None:
        """Forget the body of ``uid`` (if any)."""
        self._kept.pop(uid, None)


__all__ = ["UNREAD_ANNOTATIONS", "KeptBodies", "resource_version", "slim"]
