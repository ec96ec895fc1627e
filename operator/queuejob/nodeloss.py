"""Worker pods on a lost node: when they count as lost, and how they are let go.

Why the operator steps in. The worker Job has a ``podFailurePolicy``, so the Job controller
replaces a pod only once its phase is ``Failed`` (``podReplacementPolicy: Failed``). A pod on a
node that stopped answering (kubelet frozen or cut off, VM gone) never gets there: only its
kubelet would write that phase. Kubernetes' taint-based eviction merely *deletes* it, and a
deleted pod whose kubelet is gone stays Terminating, in phase Running, for as long as the node
is away (the Job's tracking finalizer keeps even a force-deleted one). Its worker slot (Job
index) stays empty that long. PodGC marks such pods Failed only once the Node object is deleted
(40 s after, at best) or tainted ``node.kubernetes.io/out-of-service`` by an administrator.

What the operator does (:class:`NodeWatch` decides, ``handlers/nodeloss.py`` acts), with
``QUEUEJOB_NODE_LOST_SECONDS`` = N > 0:

- worker pods tolerate the ``node.kubernetes.io/unreachable`` and ``not-ready`` NoExecute
  taints for N seconds (:func:`tolerations`), instead of the 300 s the API server adds by
  default: Kubernetes' own eviction starts after N seconds too;
- a node is *lost* once its ``Ready`` condition has been other than ``True`` for N seconds
  (measured from the condition's ``lastTransitionTime``), or at once when its Node object is
  gone;
- except in a disruption (:data:`DISRUPTION_FRACTION`): when every node, or at least 55 % of
  three or more nodes, is not Ready at once, the control plane has more likely lost the nodes
  than the nodes their work (an API server outage, a network split on the control plane's
  side), and no not-Ready node counts as lost; Kubernetes' node-lifecycle controller stops its
  evictions in the same case. Deleted nodes still count;
- every worker pod of a QueueJob on a lost node that has not finished (phase neither Succeeded
  nor Failed) is marked ``Failed`` with the condition ``DisruptionTarget=True`` (reason
  :data:`REASON`) and then deleted with grace period 0 (:func:`failed_status_patch`), as PodGC
  does with pods of a deleted node. The Job's ``podFailurePolicy`` ignores ``DisruptionTarget``
  failures, so the slot is refilled (after the index's replacement delay, 10 s the first time)
  without counting a failure.

Why that is safe. The lost worker may still run (a partition, not a crash), but its work is in
the queue, not in the pod: an item is completed only by the lease token that holds it
(``complete_pairs`` in ``workqueue/scripts/lib.lua`` compares the holder with the token), a
lease that was not renewed expires and the item is leased again with a new token, and a renewal
with an old token is refused (``renew.lua``). So the old worker cannot complete, fail or
release an item someone else holds now, and nothing is counted twice; while it still holds a
live lease (it could renew it), the item is simply still its own and no one else gets it.

Only pods with the operator's labels (``app.kubernetes.io/name=queuejob`` and the QueueJob
label) that a Job controls are touched (:func:`is_worker_pod`).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from queuejob import naming

#: Reason of the ``DisruptionTarget`` condition the operator sets on a pod of a lost node.
REASON = "DeletionByQueueJobOperator"
#: Taints the node lifecycle controller puts on a node that is unreachable or not ready.
NODE_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
#: At least this fraction of not-Ready nodes (of three or more) is a disruption: hold off.
DISRUPTION_FRACTION = 0.55
#: Label selector of worker pods (the labels of ``queuejob.jobs.labels``).
WORKER_SELECTOR = f"app.kubernetes.io/name=queuejob,{naming.QUEUEJOB_LABEL}"


#: Longest pause between two scans for lost nodes, whatever the other intervals.
MAX_SCAN_SECONDS = 5.0


def scan_period(lost_after: int) -> float:
    """Seconds between two scans for lost nodes: a quarter of ``QUEUEJOB_NODE_LOST_SECONDS``,
    1 s at least and :data:`MAX_SCAN_SECONDS` at most, so a lost node's pods are let go at
    most that long after the limit (one Node list from the watch cache per scan)."""
    return min(MAX_SCAN_SECONDS, max(1.0, lost_after / 4))


def tolerations(seconds: int) -> list[dict[str, Any]]:
    """Worker pod tolerations of the unreachable/not-ready NoExecute taints for ``seconds``.

    ``seconds`` 0 means the feature is off: no tolerations, so the API server's defaults
    (300 s, ``DefaultTolerationSeconds`` admission) apply.
    """
    if seconds <= 0:
        return []
    return [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in NODE_TAINTS
    ]


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 API timestamp (``2026-01-02T03:04:05Z``) as an aware datetime."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def not_ready_since(node: Mapping[str, Any]) -> datetime.datetime | None:
    """When the node's ``Ready`` condition left ``True``; None if it is ``True`` or absent.

    A node without a Ready condition (just registered) is not judged.
    """
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") != "Ready":
            continue
        if condition.get("status") == "True":
            return None
        stamp = condition.get("lastTransitionTime") or condition.get("lastHeartbeatTime")
        return parse_time(stamp) if stamp else None
    return None


def is_worker_pod(pod: Mapping[str, Any]) -> bool:
    """True for a QueueJob worker pod: the operator's labels and a controlling Job."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get("app.kubernetes.io/name") != "queuejob" or naming.QUEUEJOB_LABEL not in labels:
        return False
    return any(
        ref.get("controller") and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1"
        for ref in meta.get("ownerReferences") or []
    )


def is_finished(pod: Mapping[str, Any]) -> bool:
    """True once the pod's phase is Succeeded or Failed (the Job controller takes it from there)."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def owning_job(pod: Mapping[str, Any]) -> str | None:
    """Name of the Job controlling the pod, or None."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job":
            return str(ref.get("name"))
    return None


def failed_status_patch(
    pod: Mapping[str, Any], message: str, now: datetime.datetime
) -> dict[str, Any]:
    """Strategic-merge patch of the pod's status: phase ``Failed`` and ``DisruptionTarget``.

    The patch carries the pod's ``resourceVersion``, so it fails (409) if the pod changed since
    it was read (its kubelet came back and wrote a status, say). An existing True
    ``DisruptionTarget`` condition (taint-based eviction sets one) is kept as it is.
    """
    status = pod.get("status") or {}
    patch: dict[str, Any] = {
        "metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]},
        "status": {"phase": "Failed"},
    }
    has_target = any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if not has_target:
        patch["status"]["conditions"] = [
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": REASON,
                "message": message,
                "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ]
    return patch


@dataclasses.dataclass(frozen=True)
class LostNode:
    """A node whose unfinished worker pods are to be let go, and why."""

    name: str
    reason: str


@dataclasses.dataclass
class NodeWatch:
    """Decides from successive node lists which nodes are lost (see the module doc).

    ``lost_after`` is ``QUEUEJOB_NODE_LOST_SECONDS``. A node seen in one list and absent from a
    later one stays reported as gone until :meth:`forget` is called for it (once none of its
    worker pods is left), so a deleted node's pods are let go even if they outlive it. Nodes
    deleted before the operator first listed them are left to PodGC.
    """

    lost_after: float
    known: set[str] = dataclasses.field(default_factory=set)
    gone: set[str] = dataclasses.field(default_factory=set)
    #: whether the last :meth:`observe` saw a disruption (and so reported no not-Ready node)
    disrupted: bool = False

    def observe(self, nodes: Iterable[Mapping[str, Any]], now: datetime.datetime) -> list[LostNode]:
        """The lost nodes given the current node list (``now``: an aware UTC datetime)."""
        lost: list[LostNode] = []
        present: set[str] = set()
        not_ready = 0
        for node in nodes:
            name = str(node["metadata"]["name"])
            present.add(name)
            since = not_ready_since(node)
            if since is None:
                continue
            not_ready += 1
            away = (now - since).total_seconds()
            if away >= self.lost_after:
                lost.append(LostNode(name, f"node {name} not Ready for {away:.0f}s"))
        self.disrupted = not_ready > 0 and (
            not_ready == len(present)
            or (len(present) >= 3 and not_ready >= DISRUPTION_FRACTION * len(present))
        )
        if self.disrupted:
            lost = []
        self.gone |= self.known - present
        self.gone -= present  # a node of the same name registered again
        self.known = present
        lost.extend(LostNode(name, f"node {name} was deleted") for name in sorted(self.gone))
        return lost

    def forget(self, name: str) -> None:
        """Stop reporting the deleted node ``name`` (no worker pod of it is left)."""
        self.gone.discard(name)
