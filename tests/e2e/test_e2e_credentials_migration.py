"""Upgrade: a QueueJob left by an older operator moves to its own Redis user.

With the operator stopped, the test lays out exactly what the previous version made for a
running QueueJob: the seeded queue, the Secret holding the operator's *admin* password only, a
worker Job whose pods have no ``QUEUEJOB_REDIS_USERNAME`` (they log in as ``default``), the
status, and kopf's finalizer and last-handled configuration. Its workers start on that password.
Then the operator starts: its resume handler makes the QueueJob's ACL user, rewrites the Secret
(user name + new password) and re-creates the Job (pod templates are immutable; the old pods get
SIGTERM, give their items back and exit 143, which the Job ignores). The QueueJob finishes with
every item succeeded once, and the admin password is in no Secret of the namespace (a finished
QueueJob's Secret included).

Also: Redis restarted without an ACL file loses the users; the status refresh puts them back.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import kopf
import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for
from queuejob import jobs, naming, queues
from queuejob.settings import strip_password
from queuejob.spec import parse
from workqueue import acl
from workqueue.redisqueue import LeaseQueue

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ITEMS = [f"item-{i:02d}" for i in range(40)]


def _old_job(qj: dict[str, Any], queue: str, operator: OperatorHandle) -> dict[str, Any]:
    """The worker Job as the previous operator built it: no user name in the pods' env."""
    job = jobs.build_job(
        qj,
        parse(qj["spec"]),
        queue=queue,
        redis_url=strip_password(operator.pod_redis_url),
        default_image=operator.setting("QUEUEJOB_WORKER_IMAGE", "queuejob:dev"),
        image_pull_policy=operator.setting("QUEUEJOB_WORKER_IMAGE_PULL_POLICY", "IfNotPresent"),
        backoff_limit=6,
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "QUEUEJOB_REDIS_USERNAME"]
    return job


def test_queuejob_of_an_older_operator_moves_to_its_own_user(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    assert operator.redis_password, "the operator's Redis must require a password"
    admin = operator.redis()
    manifest = queuejob(
        "legacy",
        namespace,
        items=ITEMS,
        parallelism=2,
        leaseSeconds=20,
        worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.5"}]},
    )
    manifest["metadata"]["finalizers"] = ["workqueue.example.com/cleanup"]
    with operator.stopped():
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        qj = operator.get_qj(namespace, "legacy")
        storage = kopf.AnnotationsDiffBaseStorage(
            prefix="workqueue.example.com", key="last-handled-configuration"
        )
        essence = storage.build(body=kopf.Body(qj))
        cluster.kubectl(
            "annotate", "queuejob", "legacy", "-n", namespace,
            "workqueue.example.com/last-handled-configuration="
            + json.dumps(essence, separators=(",", ":")),
        )  # fmt: skip
        queue_name = naming.queue_name(namespace, "legacy", qj["metadata"]["uid"])
        queue = LeaseQueue(admin, queue_name)
        queue.configure(queues.queue_config(parse(qj["spec"])))
        assert queue.seed(ITEMS) == len(ITEMS)
        old_secret = jobs.build_secret(qj, operator.redis_password)  # the admin password
        # create, not apply: the operator POSTs them (no last-applied annotation with the data)
        cluster.kubectl("create", "-f", "-", input=json.dumps(old_secret))
        cluster.kubectl("create", "-f", "-", input=json.dumps(_old_job(qj, queue_name, operator)))
        status = {
            "status": {
                "phase": "Running",
                "queue": queue_name,
                "jobName": "legacy-workers",
                "progress": f"0/{len(ITEMS)}",
                "conditions": [
                    {
                        "type": "Seeded",
                        "status": "True",
                        "reason": "ItemsSeeded",
                        "message": f"{len(ITEMS)} items in queue {queue_name}",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        }
        cluster.kubectl(
            "patch", "queuejob", "legacy", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps(status),
        )  # fmt: skip
        # A QueueJob the old version had finished: its Secret holds the admin password too.
        finished = queuejob("done-legacy", namespace, items=["a"])
        finished["metadata"]["finalizers"] = ["workqueue.example.com/cleanup"]
        cluster.kubectl("create", "-f", "-", input=json.dumps(finished))
        done_qj = operator.get_qj(namespace, "done-legacy")
        cluster.kubectl(
            "annotate", "queuejob", "done-legacy", "-n", namespace,
            "workqueue.example.com/last-handled-configuration="
            + json.dumps(storage.build(body=kopf.Body(done_qj)), separators=(",", ":")),
        )  # fmt: skip
        old_done = jobs.build_secret(done_qj, operator.redis_password)
        cluster.kubectl("create", "-f", "-", input=json.dumps(old_done))
        done_queue = naming.queue_name(namespace, "done-legacy", done_qj["metadata"]["uid"])
        done_status = {"status": {"phase": "Succeeded", "queue": done_queue}}
        cluster.kubectl(
            "patch", "queuejob", "done-legacy", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps(done_status),
        )  # fmt: skip
        # The old workers run on the admin password.
        wait_for(lambda: queue.stats().succeeded >= 4, 180, "the old workers to make progress")
        old_uid = cluster.kubectl_json("get", "job", "legacy-workers", "-n", namespace)["metadata"][
            "uid"
        ]
        assert acl.missing_nodes(admin, queue_name) == [""]

    # The new operator has resumed the QueueJob.
    def migrated() -> dict[str, str] | None:
        secret = cluster.kubectl_json("get", "secret", "legacy-redis", "-n", namespace)
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        return data if data.get("username") else None

    data = wait_for(migrated, 120, "the Secret to be rewritten")
    done_data = wait_for(
        lambda: (
            d
            if "username"
            in (
                d := {
                    k: base64.b64decode(v).decode()
                    for k, v in cluster.kubectl_json(
                        "get", "secret", "done-legacy-redis", "-n", namespace
                    )["data"].items()
                }
            )
            else None
        ),
        120,
        "the finished QueueJob's Secret to be rewritten",
    )
    assert done_data["password"] != operator.redis_password
    assert data["username"] == acl.username(queue_name)
    assert data["password"] != operator.redis_password
    assert acl.missing_nodes(admin, queue_name) == []
    job = wait_for(
        lambda: (
            j
            if (j := cluster.kubectl_json("get", "job", "legacy-workers", "-n", namespace))[
                "metadata"
            ]["uid"]
            != old_uid
            else None
        ),
        120,
        "the worker Job to be re-created",
    )
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert any(e["name"] == "QUEUEJOB_REDIS_USERNAME" for e in env)
    qj = operator.wait_phase(namespace, "legacy", ("Succeeded", "Failed"), timeout=300)
    counts = qj["status"]["counts"]
    assert qj["status"]["phase"] == "Succeeded", qj["status"]
    assert counts["succeeded"] == counts["total"] == len(ITEMS) and counts["failed"] == 0, counts
    assert queue.succeeded_items() == set(ITEMS)
    secrets = cluster.kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout
    assert operator.redis_password not in secrets
    assert base64.b64encode(operator.redis_password.encode()).decode() not in secrets
    events = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=legacy"
    )
    messages = " | ".join(e.get("message", "") for e in events["items"])
    assert "own Redis user" in messages, messages


def test_redis_restarted_without_acl_file_gets_the_user_back(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    """Redis restarts (data kept, no ACL file): the QueueJob's user is gone; the status refresh
    re-applies it with the Secret's password and the workers, which waited out WRONGPASS, finish
    every item."""
    items = [f"r-{i:02d}" for i in range(30)]
    operator.apply(
        queuejob(
            "aclback",
            namespace,
            items=items,
            parallelism=2,
            leaseSeconds=20,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.5"}]},
        )
    )
    queue = operator.queue(namespace, "aclback")
    wait_for(lambda: queue.stats().succeeded >= 2, 180, "the workers to make progress")
    with operator.redis_outage():
        pass  # stopped and started again: the data is kept, the ACL users are not
    username = acl.username(queue.name)
    secret = cluster.kubectl_json("get", "secret", "aclback-redis", "-n", namespace)
    assert base64.b64decode(secret["data"]["username"]).decode() == username
    qj = operator.wait_phase(namespace, "aclback", ("Succeeded", "Failed"), timeout=300)
    counts = qj["status"]["counts"]
    assert qj["status"]["phase"] == "Succeeded", qj["status"]
    assert counts["succeeded"] == counts["total"] == len(items), counts
    assert operator.redis().execute_command("ACL", "GETUSER", username) is not None
    assert f"The Redis user of queue {queue.name} was missing" in operator.logs()
