"""JobCache: the worker Jobs as the watch last showed them (``queuejob.jobcache``).

Fed the way the operator feeds it: watch events (type and raw object) and the objects API
responses return; read back by namespace and name.
"""

from __future__ import annotations

import json
from typing import Any

from queuejob import credentials, jobs, jobstatus, naming
from queuejob.jobcache import JobCache
from queuejob.queues import RedisTarget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(
    version: int | str,
    *,
    uid: str = "uid-1",
    name: str = "qj-workers",
    namespace: str = "team-a",
    owner: str = "uid-qj",
    active: int = 0,
    labelled: bool = True,
) -> dict[str, Any]:
    """A worker Job as the API returns it (trimmed to what the cache looks at)."""
    labels = {naming.QUEUEJOB_LABEL: "qj"} if labelled else {"app": "other"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": str(version),
            "labels": labels,
            "ownerReferences": [{"kind": naming.KIND, "name": "qj", "uid": owner}],
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {}}],
        },
        "spec": {
            "parallelism": 2,
            "completions": 2,
            "completionMode": "Indexed",
            "template": {
                "metadata": {"labels": {naming.QUEUEJOB_LABEL: "qj"}},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "image": "queuejob:dev",
                            "env": [
                                {"name": "QUEUEJOB_QUEUE", "value": "qj:team-a:qj:0001"},
                                {"name": "QUEUEJOB_REDIS_USERNAME", "value": "qj-0001"},
                            ],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
        "status": {"active": active, "conditions": [{"type": "Complete", "status": "False"}]},
    }


def active(cache: JobCache, name: str = "qj-workers", namespace: str = "team-a") -> int | None:
    kept = cache.get(namespace, name)
    return None if kept is None else int(kept["status"]["active"])


def test_a_watched_job_is_read_back_by_namespace_and_name() -> None:
    cache = JobCache()
    assert cache.get("team-a", "qj-workers") is None
    cache.observe(job(10, active=1), None)  # listed
    assert active(cache) == 1
    cache.observe(job(11, active=2), "MODIFIED")
    assert active(cache) == 2
    assert (cache.hits, cache.misses) == (2, 1)


def test_the_highest_resource_version_wins_whatever_the_order() -> None:
    cache = JobCache()
    cache.keep(job(20, active=3))  # a patch's response, ahead of the watch
    cache.observe(job(19, active=1), "MODIFIED")  # the watch catching up: older
    assert active(cache) == 3
    cache.observe(job(20, active=3), "MODIFIED")
    cache.observe(job(21, active=0), "MODIFIED")
    assert active(cache) == 0
    cache.keep(job(18, active=5))  # a response that came back late
    assert active(cache) == 0


def test_resource_versions_compare_as_numbers() -> None:
    cache = JobCache()
    cache.observe(job(99, active=1), "ADDED")
    cache.observe(job(100, active=2), "MODIFIED")  # "100" < "99" as text
    assert active(cache) == 2


def test_a_deleted_job_is_gone_and_stays_gone() -> None:
    cache = JobCache()
    cache.observe(job(30, active=1), "ADDED")
    cache.observe(job(31), "DELETED")
    assert cache.get("team-a", "qj-workers") is None
    assert len(cache) == 0
    cache.keep(job(30, active=1))  # a response from before the deletion, handed back late
    assert cache.get("team-a", "qj-workers") is None


def test_a_job_re_created_with_the_same_name_is_not_confused_with_the_old_one() -> None:
    cache = JobCache()
    cache.observe(job(40, uid="old", active=4), "ADDED")
    cache.keep(job(45, uid="new", active=0))  # the re-create's response, before any event
    # The old Job's last events arrive after: its final update and its deletion.
    cache.observe(job(42, uid="old", active=4), "MODIFIED")
    cache.observe(job(43, uid="old"), "DELETED")
    kept = cache.get("team-a", "qj-workers")
    assert kept is not None and kept["metadata"]["uid"] == "new"
    cache.observe(job(45, uid="new", active=0), "ADDED")
    cache.observe(job(46, uid="new", active=2), "MODIFIED")
    assert active(cache) == 2


def test_a_deletion_of_the_old_uid_after_the_new_one_was_seen_by_the_watch() -> None:
    cache = JobCache()
    cache.observe(job(50, uid="old"), "ADDED")
    cache.observe(job(51, uid="old"), "DELETED")
    cache.observe(job(52, uid="new", active=1), "ADDED")  # the same name again
    assert active(cache) == 1
    cache.keep(job(50, uid="old"))  # stale response of the old one
    kept = cache.get("team-a", "qj-workers")
    assert kept is not None and kept["metadata"]["uid"] == "new"


def test_namespaces_are_kept_apart() -> None:
    cache = JobCache()
    cache.observe(job(60, namespace="team-a", active=1), "ADDED")
    cache.observe(job(61, namespace="team-b", uid="uid-b", active=7), "ADDED")
    assert active(cache, namespace="team-a") == 1
    assert active(cache, namespace="team-b") == 7
    assert cache.get("team-c", "qj-workers") is None
    cache.observe(job(62, namespace="team-b", uid="uid-b"), "DELETED")
    assert active(cache, namespace="team-a") == 1


def test_only_the_operators_labelled_jobs_are_kept() -> None:
    cache = JobCache()
    cache.observe(job(70, labelled=False), "ADDED")
    cache.keep(job(71, labelled=False))
    cache.observe({"metadata": {"resourceVersion": "72"}}, "BOOKMARK")
    assert len(cache) == 0


def test_a_lookup_with_an_owner_sees_only_that_queuejobs_job() -> None:
    cache = JobCache()
    cache.observe(job(80, owner="uid-old-qj"), "ADDED")  # of a deleted QueueJob, same name
    assert cache.get("team-a", "qj-workers", owner="uid-new-qj") is None
    assert cache.get("team-a", "qj-workers", owner="uid-old-qj") is not None


def test_a_lookup_returns_a_copy_of_what_the_operator_reads() -> None:
    cache = JobCache()
    source = job(90, active=1)
    cache.observe(source, "ADDED")
    source["status"]["active"] = 9  # the caller's object is not the cache's
    kept = cache.get("team-a", "qj-workers")
    assert kept is not None and kept["status"]["active"] == 1
    kept["status"]["active"] = 5  # nor is what a lookup returns
    assert active(cache) == 1
    kept = cache.get("team-a", "qj-workers")
    assert kept is not None
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["ownerReferences"] == source["metadata"]["ownerReferences"]
    assert kept["status"] == {**source["status"], "active": 1}
    spec = {k: v for k, v in source["spec"].items() if k != "template"}
    assert {k: v for k, v in kept["spec"].items() if k != "template"} == spec
    # Of the pod template only the containers' names and their variables' names.
    assert kept["spec"]["template"] == {
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "env": [{"name": "QUEUEJOB_QUEUE"}, {"name": "QUEUEJOB_REDIS_USERNAME"}],
                }
            ]
        }
    }
    assert jobs.scale_fields(kept, 3) == jobs.scale_fields(source, 3)
    assert jobstatus.true_condition(kept, "Complete") is None
    shared = RedisTarget("redis://r:6379/0", "admin", "redis://r:6379/0", shared=True)
    assert credentials.job_is_current(kept, shared)
    old = job(91, uid="uid-2")  # an older operator's Job: no per-QueueJob user
    old["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    cache.observe(old, "ADDED")
    assert not credentials.job_is_current(cache.get("team-a", "qj-workers"), shared)


def test_a_kept_job_is_packed_and_every_lookup_unpacks_a_new_copy() -> None:
    cache = JobCache()
    cache.observe(json.loads(json.dumps(job(90, active=2))), "ADDED")
    assert isinstance(cache._entries[("team-a", "qj-workers")].job, bytes)
    first = cache.get("team-a", "qj-workers")
    assert first is not None
    first["status"]["active"] = 0
    first["metadata"]["ownerReferences"].clear()
    second = cache.get("team-a", "qj-workers", owner="uid-qj")
    assert second is not None and second is not first
    assert second["status"]["active"] == 2


def test_a_job_not_confirmed_for_max_age_is_a_miss_until_seen_again() -> None:
    clock = Clock()
    cache = JobCache(max_age=100, clock=clock)
    cache.observe(job(100, active=1), "ADDED")
    clock.now += 100
    assert active(cache) == 1
    clock.now += 1
    assert cache.get("team-a", "qj-workers") is None  # a deletion may have been missed
    cache.observe(job(100, active=1), None)  # re-listed: the same object confirmed
    assert active(cache) == 1


def test_discard_after_a_not_found_keeps_what_was_confirmed_since() -> None:
    clock = Clock()
    cache = JobCache(clock=clock)
    cache.observe(job(110), "ADDED")
    started = clock.now
    clock.now += 1
    cache.discard("team-a", "qj-workers", before=started)
    assert cache.get("team-a", "qj-workers") is None
    cache.observe(job(112, uid="new"), "ADDED")  # created while a GET was on its way
    cache.discard("team-a", "qj-workers", before=started)
    assert cache.get("team-a", "qj-workers") is not None


def test_tombstones_expire() -> None:
    clock = Clock()
    cache = JobCache(clock=clock)
    for i in range(3):
        cache.observe(job(120 + i, name=f"j{i}"), "DELETED")
    assert len(cache._tombstones) == 3
    clock.now += 1000
    cache.observe(job(200, name="j9"), "DELETED")  # a later deletion prunes the old ones
    assert list(cache._tombstones) == [("team-a", "j9")]
