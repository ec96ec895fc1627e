"""Unit tests of ``queuejob.nodeloss``: when a node counts as lost, which pods are let go and how,
and the worker Job's tolerations (``queuejob.jobs.build_job`` with ``node_lost_seconds``)."""

from __future__ import annotations

import datetime
from typing import Any

from queuejob import jobs, naming, nodeloss
from queuejob.nodeloss import LostNode, NodeWatch
from queuejob.spec import parse

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _stamp(at: datetime.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _node(name: str, ready: str | None, since: datetime.datetime = T0) -> dict[str, Any]:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready, "lastTransitionTime": _stamp(since)})
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


def _pod(
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    owner_kind: str = "Job",
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "crunch-workers-0-abcde",
            "namespace": "team-a",
            "uid": "u-1",
            "resourceVersion": "42",
            "labels": {"app.kubernetes.io/name": "queuejob", naming.QUEUEJOB_LABEL: "crunch"}
            if labels is None
            else labels,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": owner_kind,
                    "name": "crunch-workers",
                    "uid": "j-1",
                    "controller": True,
                }
            ],
        },
        "status": {"phase": phase, "conditions": conditions or []},
    }


def test_not_ready_since_reads_the_ready_condition() -> None:
    assert nodeloss.not_ready_since(_node("n", "True")) is None
    assert nodeloss.not_ready_since(_node("n", "Unknown")) == T0
    assert nodeloss.not_ready_since(_node("n", "False")) == T0
    assert nodeloss.not_ready_since(_node("n", None)) is None  # not judged without Ready


def test_a_node_is_lost_only_after_the_limit() -> None:
    watch = NodeWatch(lost_after=20)
    nodes = [_node("a", "True"), _node("b", "Unknown")]
    assert watch.observe(nodes, T0 + datetime.timedelta(seconds=19)) == []
    lost = watch.observe(nodes, T0 + datetime.timedelta(seconds=20))
    assert [n.name for n in lost] == ["b"]
    assert "not Ready for 20s" in lost[0].reason
    # Ready again: no longer lost
    assert watch.observe([_node("a", "True"), _node("b", "True")], T0 + _s(60)) == []


def _s(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def test_no_node_counts_as_lost_when_most_of_them_are_not_ready() -> None:
    """A control-plane outage makes every node look lost: hold off, as Kubernetes does."""
    later = T0 + _s(60)
    all_down = NodeWatch(lost_after=20)
    assert all_down.observe([_node("a", "Unknown"), _node("b", "Unknown")], later) == []
    assert all_down.disrupted
    most = NodeWatch(lost_after=20)
    three = [_node("a", "True"), _node("b", "Unknown"), _node("c", "False")]
    assert most.observe(three, later) == []
    one_of_three = NodeWatch(lost_after=20)
    three = [_node("a", "True"), _node("b", "True"), _node("c", "Unknown")]
    assert [n.name for n in one_of_three.observe(three, later)] == ["c"]
    assert not one_of_three.disrupted
    one_of_two = NodeWatch(lost_after=20)
    two = [_node("a", "True"), _node("b", "Unknown")]
    assert [n.name for n in one_of_two.observe(two, later)] == ["b"]
    # deleted nodes still count during a disruption
    watch = NodeWatch(lost_after=20)
    watch.observe([_node("a", "True"), _node("b", "True")], T0)
    assert watch.observe([_node("a", "Unknown")], later) == [LostNode("b", "node b was deleted")]


def test_a_deleted_node_is_lost_at_once_until_forgotten() -> None:
    watch = NodeWatch(lost_after=20)
    assert watch.observe([_node("a", "True"), _node("b", "True")], T0) == []
    lost = watch.observe([_node("a", "True")], T0 + _s(1))
    assert lost == [LostNode("b", "node b was deleted")]
    # still reported while its pods may linger, even though it is in no list any more
    assert watch.observe([_node("a", "True")], T0 + _s(2)) == lost
    watch.forget("b")
    assert watch.observe([_node("a", "True")], T0 + _s(3)) == []


def test_a_node_registered_again_under_its_name_is_judged_afresh() -> None:
    watch = NodeWatch(lost_after=20)
    watch.observe([_node("b", "True")], T0)
    assert watch.observe([], T0 + _s(1)) == [LostNode("b", "node b was deleted")]
    assert watch.observe([_node("b", "True")], T0 + _s(2)) == []
    assert watch.gone == set()


def test_nodes_never_seen_are_not_reported_gone() -> None:
    """A node deleted before the operator's first list is PodGC's (it has no record of it)."""
    watch = NodeWatch(lost_after=20)
    assert watch.observe([], T0) == []


def test_only_job_controlled_pods_with_the_operator_labels_are_workers() -> None:
    assert nodeloss.is_worker_pod(_pod())
    assert not nodeloss.is_worker_pod(_pod(labels={"app.kubernetes.io/name": "queuejob"}))
    assert not nodeloss.is_worker_pod(_pod(labels={naming.QUEUEJOB_LABEL: "crunch"}))
    assert not nodeloss.is_worker_pod(_pod(owner_kind="ReplicaSet"))
    assert nodeloss.owning_job(_pod()) == "crunch-workers"
    assert nodeloss.is_finished(_pod(phase="Failed"))
    assert nodeloss.is_finished(_pod(phase="Succeeded"))
    assert not nodeloss.is_finished(_pod(phase="Pending"))


def test_the_worker_selector_matches_the_job_template_labels() -> None:
    """The pod list's label selector selects what build_job labels its pods with."""
    wanted = jobs.labels("crunch")
    for term in nodeloss.WORKER_SELECTOR.split(","):
        key, _, value = term.partition("=")
        assert key in wanted and (not value or wanted[key] == value), term


def test_the_status_patch_marks_failed_with_a_disruption_target() -> None:
    patch = nodeloss.failed_status_patch(_pod(), "node b not Ready for 21s", T0)
    assert patch["metadata"] == {"resourceVersion": "42"}  # optimistic: 409 if it changed
    assert patch["status"]["phase"] == "Failed"
    [condition] = patch["status"]["conditions"]
    assert condition == {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": nodeloss.REASON,
        "message": "node b not Ready for 21s",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
    }
    # The podFailurePolicy's first rule ignores exactly this condition.
    rule = jobs.pod_failure_policy()["rules"][0]
    assert rule["action"] == "Ignore"
    assert rule["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


def test_an_existing_disruption_target_is_kept() -> None:
    evicted = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}
    patch = nodeloss.failed_status_patch(_pod(conditions=[evicted]), "lost", T0)
    assert patch["status"] == {"phase": "Failed"}


def test_tolerations_replace_the_300s_defaults_and_0_adds_none() -> None:
    assert nodeloss.tolerations(0) == []
    assert nodeloss.tolerations(15) == [
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 15,
        },
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 15,
        },
    ]


def test_the_worker_job_carries_the_tolerations() -> None:
    args: dict[str, Any] = {
        "queue": "q",
        "redis_url": "redis://r:6379/0",
        "default_image": "queuejob:dev",
        "image_pull_policy": "IfNotPresent",
        "backoff_limit": 6,
    }
    body = {"metadata": {"name": "crunch", "namespace": "team-a", "uid": "u"}}
    spec = parse({"items": ["a"]})
    pod = jobs.build_job(body, spec, node_lost_seconds=20, **args)["spec"]["template"]["spec"]
    assert pod["tolerations"] == nodeloss.tolerations(20)
    off = jobs.build_job(body, spec, node_lost_seconds=0, **args)["spec"]["template"]["spec"]
    assert "tolerations" not in off


def test_the_scan_period_follows_the_limit_not_the_status_resync() -> None:
    # A lost node is let go at most one scan after the limit: with the default 20 s the scan
    # runs every 5 s, whatever QUEUEJOB_STATUS_INTERVAL (a resync of minutes) says.
    assert nodeloss.scan_period(20) == 5.0
    assert nodeloss.scan_period(8) == 2.0
    assert nodeloss.scan_period(2) == 1.0
    assert nodeloss.scan_period(600) == nodeloss.MAX_SCAN_SECONDS
