"""A hostile tenant cannot reach another tenant's queue, nor the operator's Redis as a whole.

Tenant A is a user holding only the ``edit`` ClusterRole through a RoleBinding in its namespace
(the test acts as it with ``kubectl --as``). Tenant B runs a QueueJob with items
``salary-alice`` and ``salary-bob`` (a slow command, so it is running). A reads every
credential its rights give it (its QueueJobs' Secrets through the API; B's Secret and the
operator's are refused), then runs a QueueJob whose worker command (``hostile_worker.py``)
tries, with each credential found, to read, lease, complete, fail, redrive and delete B's items,
KEYS/SCAN, FLUSHALL, CONFIG, ACL (list, getuser, setuser escalation), SCRIPT FLUSH, EVAL naming
B's keys, SUBSCRIBE/PSUBSCRIBE/PUBLISH on B's channel, AUTH as ``default`` and as B's user.
Every attempt must be refused (NOPERM / WRONGPASS / NOAUTH / Forbidden) and B's QueueJob must
succeed with each item done once. The table of attempts is printed (run with ``-s``).

Runs unchanged on the node agent (``--cluster=local``) and on a real node
(``--cluster=local-kubelet``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LABEL = "workqueue.example.com/queuejob"
REFUSED = ("REFUSED NOPERM", "REFUSED WRONGPASS", "REFUSED NOAUTH")


def _pods(cluster: Cluster, namespace: str, qj: str) -> list[str]:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"{LABEL}={qj}")
    return [p["metadata"]["name"] for p in pods["items"]]


def _logs(cluster: Cluster, namespace: str, qj: str) -> str:
    return "\n".join(cluster.pod_logs(namespace, pod) for pod in _pods(cluster, namespace, qj))


def test_hostile_tenant_is_refused_everything(cluster: Cluster, operator: OperatorHandle) -> None:
    suffix = uuid.uuid4().hex[:5]
    ns_a, ns_b = f"tenant-a-{suffix}", f"tenant-b-{suffix}"
    user_a = f"tenant-a-user-{suffix}"
    as_a = f"--as={user_a}"
    table: list[tuple[str, str, str]] = []
    for ns in (ns_a, ns_b):
        cluster.kubectl("create", "namespace", ns)
    try:
        cluster.kubectl("apply", "-f", str(REPO / "manifests/user-rbac/queuejob-user-roles.yaml"))
        cluster.kubectl(
            "create", "rolebinding", "tenant-a-edit", "--clusterrole=edit", f"--user={user_a}",
            "-n", ns_a,
        )  # fmt: skip

        def a_can(verb: str, resource: str, ns: str) -> bool:
            done = cluster.kubectl("auth", "can-i", verb, resource, "-n", ns, as_a, check=False)
            return done.stdout.strip() == "yes"

        wait_for(lambda: a_can("create", "queuejobs", ns_a), 60, "edit to include QueueJobs")
        assert not a_can("get", "secrets", ns_b)

        def as_tenant_a(*args: str, input: str | None = None) -> Any:
            return cluster.kubectl(*args, as_a, input=input, check=False)

        # A's first QueueJob, to get a Secret of its own to read through the API.
        made = as_tenant_a(
            "apply", "-f", "-", input=json.dumps(queuejob("innocent", ns_a, items=["x"]))
        )
        assert made.returncode == 0, made.stderr
        operator.wait_phase(ns_a, "innocent", ("Succeeded",), timeout=180)
        read = as_tenant_a("get", "secret", "innocent-redis", "-n", ns_a, "-o", "json")
        assert read.returncode == 0, read.stderr
        stolen = {
            k: base64.b64decode(v).decode() for k, v in json.loads(read.stdout)["data"].items()
        }
        assert set(stolen) == {"username", "password"}
        assert operator.redis_password is None or operator.redis_password not in read.stdout
        innocent_queue = operator.get_qj(ns_a, "innocent")["status"]["queue"]

        # B's payroll runs.
        operator.apply(
            queuejob(
                "payroll",
                ns_b,
                items=["salary-alice", "salary-bob"],
                parallelism=2,
                leaseSeconds=20,
                worker={"command": ["sh", "-c", "sleep 40"]},
            )
        )
        victim = wait_for(
            lambda: (
                st.get("queue")
                if (st := operator.get_qj(ns_b, "payroll").get("status", {}))
                .get("counts", {})
                .get("leased")
                else None
            ),
            180,
            "B's payroll to be running",
        )

        # Through the API, with A's rights.
        for what, args in (
            ("get B's Secret", ("get", "secret", "payroll-redis", "-n", ns_b)),
            ("get B's QueueJob", ("get", "queuejob", "payroll", "-n", ns_b)),
            ("list Secrets of the operator", ("get", "secrets", "-n", "queuejob-system")),
            ("list Secrets cluster-wide", ("get", "secrets", "-A")),
        ):
            done = as_tenant_a(*args)
            answer = "REFUSED Forbidden" if "Forbidden" in done.stderr else f"ALLOWED {done.stdout}"
            table.append(("kubectl --as A", what, answer.strip()[:120]))

        # A's hostile worker: python with redis-py, as in the worker image (on the node agent,
        # worker processes run on this host: the test's interpreter comes first on PATH).
        script = (HERE / "hostile_worker.py").read_text()
        path = (
            [{"name": "PATH", "value": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}]
            if cluster.local_processes
            else []
        )
        attack = queuejob(
            "attack",
            ns_a,
            items=["go"],
            worker={
                "command": ["python", "-c", script],
                "env": [
                    {"name": "VICTIM_QUEUE", "value": victim},
                    {"name": "STOLEN_USERNAME", "value": stolen["username"]},
                    {"name": "STOLEN_PASSWORD", "value": stolen["password"]},
                    {"name": "STOLEN_QUEUE", "value": innocent_queue},
                    *path,
                ],
            },
        )
        made = as_tenant_a("apply", "-f", "-", input=json.dumps(attack))
        assert made.returncode == 0, made.stderr
        operator.wait_phase(ns_a, "attack", ("Succeeded", "Failed"), timeout=240)
        logs = _logs(cluster, ns_a, "attack")
        for line in logs.splitlines():
            match = re.search(r"(ATTEMPT|CONTROL)\|([^|]*)\|([^|]*)\|(.*)$", line)
            if match:
                kind, creds, what, answer = match.groups()
                table.append((f"{kind.lower()} {creds}", what, answer))

        width = max(len(what) for _, what, _ in table)
        print("\nHostile tenant: attempts and answers")
        for creds, what, answer in table:
            print(f"  {creds:<16} {what:<{width}}  {answer}")

        attempts = [row for row in table if not row[0].startswith("control")]
        assert len(attempts) >= 50, logs[-3000:]
        allowed = [
            row for row in attempts if not row[2].startswith((*REFUSED, "REFUSED Forbidden"))
        ]
        assert not allowed, allowed
        controls = {(c, w): a for c, w, a in table if c == "control env"}
        assert all(a.startswith("ALLOWED") for a in controls.values()), controls
        assert len(controls) == 2, controls

        # B is untouched: it succeeds with each item done once.
        qj = operator.wait_phase(ns_b, "payroll", ("Succeeded", "Failed"), timeout=240)
        status = qj["status"]
        assert status["phase"] == "Succeeded", status
        assert status["counts"]["succeeded"] == status["counts"]["total"] == 2, status
        assert status["counts"]["retries"] == 0, status
        done = re.findall(r"item '([^']+)' done", _logs(cluster, ns_b, "payroll"))
        assert sorted(done) == ["salary-alice", "salary-bob"], done
    finally:
        for ns in (ns_a, ns_b):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
