"""``kubectl queuejob``: status, leases, dead-letters, redrive, add and logs on a live cluster,
the operator carrying out the requests, and RBAC deciding who may change a queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
USER_ROLES = REPO / "manifests" / "user-rbac" / "queuejob-user-roles.yaml"


def plugin(
    cluster: Cluster, *args: str, as_user: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``kubectl-queuejob ARGS`` against the test cluster (``--as`` when ``as_user``)."""
    argv = [sys.executable, "-m", "queuejob_kubectl", f"--kubeconfig={cluster.kubeconfig}"]
    if as_user:
        argv.append(f"--as={as_user}")
    return subprocess.run(
        [*argv, *args], input=stdin, capture_output=True, text=True, timeout=240, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}{result.stdout}"
    return result.stdout


def events(cluster: Cluster, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    found = cluster.kubectl_json(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name},reason={reason}",
    )
    return list(found["items"])


def job_uid(cluster: Cluster, namespace: str, name: str) -> str:
    job = cluster.kubectl_json("get", "job", f"{name}-workers", "-n", namespace)
    return str(job["metadata"]["uid"])


def test_status_leases_and_logs(cluster: Cluster, operator: OperatorHandle, namespace: str) -> None:
    items = [f"slow-{i}" for i in range(4)]
    operator.apply(
        queuejob(
            "watched",
            namespace,
            items=items,
            parallelism=2,
            leaseSeconds=60,
            # 30 s an item: the status, leases and kubectl calls below all see it running,
            # also when each plugin call takes seconds on a loaded machine.
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "30"}]},
        )
    )

    def leased() -> list[dict[str, Any]] | None:
        data = json.loads(ok(plugin(cluster, "leases", "watched", "-n", namespace, "-o", "json")))
        return data["leases"] or None

    rows = wait_for(leased, 120, "status.leases of a running QueueJob")
    pods = {
        p["metadata"]["name"] for p in cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    }
    for row in rows:
        assert row["item"] in items
        assert row["worker"] in pods, (row, pods)  # the holder is a worker pod
        assert row["attempt"] == 1
        assert row["since"].endswith("Z")
    human = ok(plugin(cluster, "status", "watched", "-n", namespace))
    assert "QueueJob " + namespace + "/watched" in human
    assert "phase: Running" in human
    assert "/4 succeeded" in human and "[" in human
    assert "Conditions:" in human and "Seeded" in human
    assert "JobCreated" in human  # an Event

    table = ok(plugin(cluster, "leases", "watched", "-n", namespace))
    assert table.splitlines()[0].split() == ["ITEM", "WORKER", "ATTEMPT", "AGE"]
    for line in table.splitlines()[1:]:
        item, worker, attempt, _ = line.split()
        assert (item in items, worker in pods, attempt) == (True, True, "1"), line

    # kubectl finds the plugin on PATH: `kubectl queuejob ...` (flags after the subcommand).
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    via_kubectl = subprocess.run(
        [str(cluster.kubectl_path), "queuejob", "status", "watched", "-n", namespace, "-o", "yaml"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert via_kubectl.returncode == 0, via_kubectl.stderr
    data = yaml.safe_load(via_kubectl.stdout)
    assert data["name"] == "watched" and data["counts"]["total"] == 4
    assert any(e["reason"] == "JobCreated" for e in data["events"])

    operator.wait_phase(namespace, "watched", ("Succeeded",), timeout=180)

    # The phase follows the queue: a worker logs "done" just after its completion counted.
    def all_logged() -> str | None:
        logs = ok(plugin(cluster, "logs", "watched", "-n", namespace))
        return logs if all(f"item '{i}' done" in logs for i in items) else None

    logs = wait_for(all_logged, 60, "every item's 'done' line in the worker logs")
    for item in items:
        line = next(line for line in logs.splitlines() if f"item '{item}' done" in line)
        pod = line.split("]", 1)[0].lstrip("[")
        assert pod in pods, line  # each line is prefixed by its pod
    assert "No items leased" in ok(plugin(cluster, "leases", "watched", "-n", namespace))

    missing = plugin(cluster, "status", "absent", "-n", namespace)
    assert missing.returncode == 1
    assert f'queuejob "absent" not found in namespace "{namespace}"' in missing.stderr
    usage = plugin(cluster, "status", "-n", namespace)
    assert usage.returncode == 2 and "NAME" in usage.stderr
    bad_output = plugin(cluster, "status", "watched", "-o", "wide")
    assert bad_output.returncode == 2


def test_redrive_failed_queuejob_reruns_and_succeeds(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    items = ["ok-1", "ok-2", "ok-3", "poison-a", "poison-b"]
    operator.apply(
        queuejob(
            "redrive",
            namespace,
            items=items,
            parallelism=2,
            retry={"maxAttempts": 2, "backoff": {"baseSeconds": 0.2, "capSeconds": 0.5}},
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"}]},
        )
    )
    operator.wait_phase(namespace, "redrive", ("Failed",), timeout=150)
    dead = json.loads(ok(plugin(cluster, "dead-letters", "redrive", "-n", namespace, "-o", "json")))
    assert dead["failed"] == 2
    assert sorted(d["item"] for d in dead["deadLetters"]) == ["poison-a", "poison-b"]
    assert all(d["attempts"] == 2 and "always fails" in d["error"] for d in dead["deadLetters"])
    table = ok(plugin(cluster, "dead-letters", "redrive", "-n", namespace))
    assert table.split()[:3] == ["ITEM", "ATTEMPTS", "ERROR"] and "poison-a" in table

    usage = plugin(cluster, "redrive", "redrive", "-n", namespace)
    assert usage.returncode == 2 and "--all" in usage.stderr

    # Redriving an item that is not a dead letter changes nothing and says so.
    first_job = job_uid(cluster, namespace, "redrive")
    out = ok(plugin(cluster, "redrive", "redrive", "ok-1", "-n", namespace))
    assert "0 dead letters back to pending" in out and "ok-1 (succeeded)" in out
    assert operator.get_qj(namespace, "redrive")["status"]["phase"] == "Failed"

    # Not fixed yet: poison-a runs again (fresh attempts, a new Job) and dies again.
    out = ok(plugin(cluster, "redrive", "redrive", "poison-a", "-n", namespace))
    assert "1 dead letter back to pending" in out
    wait_for(
        lambda: events(cluster, namespace, "redrive", "WorkersRestarted"),
        60,
        "the Job re-created after the redrive",
    )
    second_job = job_uid(cluster, namespace, "redrive")
    assert second_job != first_job
    # The first Job's pods went with it: logs says so instead of silently showing fewer pods.
    logs = plugin(cluster, "logs", "redrive", "-n", namespace)
    assert logs.returncode == 0, logs.stderr
    assert "the worker Job was re-created 1 time" in logs.stderr, logs.stderr
    assert "current Job's pods only" in logs.stderr
    qj = operator.wait_phase(namespace, "redrive", ("Failed",), timeout=150)
    assert qj["status"]["counts"]["failed"] == 2
    assert qj["status"]["counts"]["total"] == 5  # each item counted once

    # The fix ships (the item command now handles them), then every dead letter is redriven.
    patch = {
        "spec": {
            "worker": {
                "env": [
                    {"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"},
                    {"name": "QUEUEJOB_DEMO_FIXED_ITEMS", "value": "poison-a,poison-b"},
                ]
            }
        }
    }
    cluster.kubectl(
        "patch", "qj", "redrive", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )
    result = json.loads(
        ok(plugin(cluster, "redrive", "redrive", "--all", "-n", namespace, "-o", "json"))
    )
    assert result["result"] == "Succeeded" and result["action"] == "redrive"
    assert result["message"].startswith("2 dead letters back to pending")
    qj = operator.wait_phase(namespace, "redrive", ("Succeeded",), timeout=150)
    status = qj["status"]
    assert status["counts"] == {
        **status["counts"],
        "total": 5,
        "succeeded": 5,
        "failed": 0,
        "pending": 0,
        "leased": 0,
    }
    assert status["deadLetters"] == []
    assert status["lastRequest"]["id"] == result["id"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    assert conditions["Failed"]["status"] == "False"
    assert job_uid(cluster, namespace, "redrive") not in (first_job, second_job)
    assert len(events(cluster, namespace, "redrive", "Redriven")) >= 1
    assert operator.queue(namespace, "redrive").succeeded_items() == set(items)


def test_a_redrive_runs_once_while_the_old_job_is_slow_to_go(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    """Reopening a Failed QueueJob holds its lock while the old Job is deleted. Here a finalizer
    keeps that Job for seconds, so the 1 s status timer and the event-driven refresh both queue
    up behind the lock: the one that comes second must see the request as done (not move the
    dead letters again and report 0, nor re-create the new Job once more)."""
    operator.apply(
        queuejob(
            "slowgo",
            namespace,
            items=["ok-1", "poison-a", "poison-b"],
            parallelism=1,
            retry={"maxAttempts": 1},
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"}]},
        )
    )
    operator.wait_phase(namespace, "slowgo", ("Failed",), timeout=150)
    job = "slowgo-workers"
    hold = '{"metadata": {"finalizers": ["example.com/hold"]}}'
    cluster.kubectl("patch", "job", job, "-n", namespace, "--type=merge", "-p", hold)
    first_job = job_uid(cluster, namespace, "slowgo")

    def release() -> None:
        # Foreground-free deletion leaves the Job with a deletionTimestamp until this runs.
        wait_for(
            lambda: cluster.kubectl_json("get", "job", job, "-n", namespace)["metadata"].get(
                "deletionTimestamp"
            ),
            60,
            "the old Job marked for deletion",
        )
        time.sleep(6)  # several timer ticks and refresh triggers wait behind the lock meanwhile
        cluster.kubectl(
            "patch", "job", job, "-n", namespace, "--type=merge",
            "-p", '{"metadata": {"finalizers": null}}',
        )  # fmt: skip

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    result = json.loads(
        ok(plugin(cluster, "redrive", "slowgo", "--all", "-n", namespace, "-o", "json"))
    )
    releaser.join(timeout=120)
    assert not releaser.is_alive()
    assert result["message"] == "2 dead letters back to pending", result

    # Both items fail again; the record still names the one redrive that moved them.
    wait_for(lambda: job_uid(cluster, namespace, "slowgo") != first_job, 60, "the re-created Job")
    qj = operator.wait_phase(namespace, "slowgo", ("Failed",), timeout=150)
    time.sleep(3)  # any second refresh that was queued behind the lock has run by now
    qj = operator.get_qj(namespace, "slowgo")
    assert qj["status"]["lastRequest"]["id"] == result["id"]
    assert qj["status"]["lastRequest"]["message"] == "2 dead letters back to pending"
    assert qj["status"]["counts"]["failed"] == 2
    assert len(events(cluster, namespace, "slowgo", "WorkersRestarted")) == 1
    assert len(events(cluster, namespace, "slowgo", "Redriven")) == 1


def test_add_items_to_running_and_finished_queuejobs(
    cluster: Cluster, operator: OperatorHandle, namespace: str, tmp_path: Path
) -> None:
    operator.apply(
        queuejob(
            "adder",
            namespace,
            items=["first"],
            parallelism=1,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.2"}]},
        )
    )
    operator.wait_phase(namespace, "adder", ("Succeeded",), timeout=120)
    job_before = job_uid(cluster, namespace, "adder")
    # A finished QueueJob: the items arrive after its workers exited; it runs again.
    items_file = tmp_path / "items.txt"
    items_file.write_text("first\nlate-1\n\nlate-2\nlate-1\n")
    out = ok(plugin(cluster, "add", "adder", "--from-file", str(items_file), "-n", namespace))
    assert "2 items added; 1 already in the queue" in out
    qj = operator.get_qj(namespace, "adder")
    assert qj["status"]["phase"] in ("Running", "Succeeded")
    qj = operator.wait_phase(namespace, "adder", ("Succeeded",), timeout=120)
    assert qj["status"]["counts"]["total"] == 3
    assert qj["status"]["counts"]["succeeded"] == 3
    assert job_uid(cluster, namespace, "adder") != job_before
    assert len(events(cluster, namespace, "adder", "ItemsAdded")) == 1
    assert len(events(cluster, namespace, "adder", "WorkersRestarted")) >= 1

    # Items added at the moment the last worker sees the queue done and exits: whichever wins,
    # nothing is lost and the QueueJob ends Succeeded with every item done once.
    queue = operator.queue(namespace, "adder")
    added = ["first", "late-1", "late-2"]
    for round_ in range(4):
        wait_for(lambda: queue.stats().done, 120, "the queue done")
        item = f"race-{round_}"
        ok(plugin(cluster, "add", "adder", item, "-n", namespace))
        added.append(item)
    qj = operator.wait_phase(namespace, "adder", ("Succeeded",), timeout=120)

    def all_done() -> bool:
        qj = operator.get_qj(namespace, "adder")
        return qj["status"]["phase"] == "Succeeded" and qj["status"]["counts"]["succeeded"] == 7

    wait_for(all_done, 120, "all 7 items succeeded")
    assert queue.succeeded_items() == set(added)
    assert queue.stats().total == 7

    # Bad input: no items, an unreadable file; a request the operator refuses is exit 1.
    assert plugin(cluster, "add", "adder", "-n", namespace).returncode == 2
    nofile = plugin(cluster, "add", "adder", "--from-file", str(tmp_path / "no"), "-n", namespace)
    assert nofile.returncode == 1 and "cannot read" in nofile.stderr
    too_big = plugin(cluster, "add", "adder", "x" * 2000, "-n", namespace)
    assert too_big.returncode == 1
    assert "refused by the operator" in too_big.stderr
    assert "line 1: item longer than 1024" in too_big.stderr
    status = operator.get_qj(namespace, "adder")["status"]
    assert status["lastRequest"]["result"] == "Failed"
    assert status["phase"] == "Succeeded" and status["counts"]["total"] == 7
    [warning] = events(cluster, namespace, "adder", "RequestFailed")
    assert warning["type"] == "Warning" and "longer than 1024" in warning["message"]


def test_only_users_allowed_to_patch_the_queuejob_change_its_queue(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    cluster.kubectl("apply", "-f", str(USER_ROLES))
    operator.apply(
        queuejob(
            "guarded",
            namespace,
            items=["poison-1", "ok-1"],
            retry={"maxAttempts": 1},
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"}]},
        )
    )
    operator.wait_phase(namespace, "guarded", ("Failed",), timeout=120)
    nobody = f"system:serviceaccount:{namespace}:nobody"
    viewer = f"system:serviceaccount:{namespace}:viewer"
    editor = f"system:serviceaccount:{namespace}:editor"
    for user, role in ((viewer, "queuejob-viewer"), (editor, "queuejob-editor")):
        cluster.kubectl(
            "create",
            "rolebinding",
            role,
            f"--clusterrole={role}",
            f"--user={user}",
            "-n",
            namespace,
        )

    for user in (nobody, viewer):
        for args in (("redrive", "guarded", "--all"), ("add", "guarded", "new-item")):
            denied = plugin(cluster, *args, "-n", namespace, "--timeout=20", as_user=user)
            assert denied.returncode == 1, (user, args, denied.stdout)
            assert "forbidden" in denied.stderr, denied.stderr
    denied = plugin(cluster, "status", "guarded", "-n", namespace, as_user=nobody)
    assert denied.returncode == 1 and "forbidden" in denied.stderr
    # The refused requests changed nothing.
    qj = operator.get_qj(namespace, "guarded")
    assert "lastRequest" not in qj["status"]
    assert qj["status"]["counts"]["total"] == 2

    assert "phase: Failed" in ok(
        plugin(cluster, "status", "guarded", "-n", namespace, as_user=viewer)
    )
    out = ok(plugin(cluster, "add", "guarded", "new-item", "-n", namespace, as_user=editor))
    assert "1 item added" in out
    out = ok(plugin(cluster, "redrive", "guarded", "--all", "-n", namespace, as_user=editor))
    assert "1 dead letter back to pending" in out
    qj = operator.wait_phase(namespace, "guarded", ("Failed",), timeout=120)
    assert qj["status"]["counts"]["total"] == 3
    assert operator.queue(namespace, "guarded").succeeded_items() == {"ok-1", "new-item"}


def test_a_request_on_a_queuejob_with_a_config_error_is_refused(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    operator.apply(
        queuejob(
            "broken", namespace, itemsFrom={"configMapKeyRef": {"name": "absent", "key": "items"}}
        )
    )
    operator.wait_phase(namespace, "broken", ("Failed",), timeout=60)
    refused = plugin(cluster, "redrive", "broken", "--all", "-n", namespace, "--timeout=90")
    assert refused.returncode == 1
    assert "refused by the operator: the QueueJob has a configuration error" in refused.stderr
    status = operator.get_qj(namespace, "broken")["status"]
    assert status["lastRequest"]["result"] == "Failed"
    assert status["lastRequest"]["action"] == "redrive"
    assert status["phase"] == "Failed"
