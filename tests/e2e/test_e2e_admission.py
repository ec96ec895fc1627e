"""The admission policy shipped with the CRD (crds/queuejob-rbac-policy.yaml) makes QueueJobs
respect RBAC: for each rule, a user impersonated with ``kubectl --as`` is allowed with the right
and refused without it, with a message naming the missing right.

The user holds namespace Roles made here; the API server's own authorizer answers the policy's
checks, so these are the real decisions. A change of RBAC reaches the authorizer within moments,
so each outcome is awaited (generous deadline) and then asserted on the API server's answer.
The operator fixture installs the policy with the CRD (local backend) or through
manifests/deploy-local (real node); the operator's own writes (finalizer, status) pass it.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

POLICY = "queuejob-rbac.workqueue.example.com"
DENIED = f"ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: "
REQUEST = "workqueue.example.com/request"
USER = "alice"
#: How long an RBAC change may take to reach the authorizer (an upper bound, not a timing).
SETTLE_SECONDS = 60

Result = subprocess.CompletedProcess[str]


def settle(attempt: Callable[[], Result], done: Callable[[Result], bool]) -> Result:
    """``attempt()`` until ``done`` holds for its result or SETTLE_SECONDS pass; the last result."""
    deadline = time.monotonic() + SETTLE_SECONDS
    result = attempt()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(0.5)
        result = attempt()
    return result


def allowed(attempt: Callable[[], Result]) -> Result:
    result = settle(attempt, lambda r: r.returncode == 0)
    assert result.returncode == 0, result.stderr
    return result


def refused(attempt: Callable[[], Result], message: str) -> Result:
    """Refused by the policy with exactly ``message``."""
    result = settle(attempt, lambda r: DENIED + message in r.stderr)
    assert result.returncode != 0, result.stdout
    assert DENIED + message in result.stderr, result.stderr
    return result


def may_not(namespace: str, right: str, why: str) -> str:
    return f"user {USER} may not {right} in namespace {namespace}: {why}"


def jobs_message(namespace: str) -> str:
    return may_not(
        namespace,
        "create jobs.batch",
        "a QueueJob runs pods of its spec.worker image and command through a Job, so creating "
        "one or changing its spec needs that right",
    )


def grant(
    cluster: Cluster, namespace: str, name: str, verbs: str, resource: str, *names: str
) -> None:
    """A Role ``name`` with ``verbs`` on ``resource`` (only ``names`` if given), bound to USER."""
    cluster.kubectl(
        "create",
        "role",
        name,
        "-n",
        namespace,
        f"--verb={verbs}",
        f"--resource={resource}",
        *(f"--resource-name={n}" for n in names),
    )
    cluster.kubectl(
        "create", "rolebinding", name, "-n", namespace, f"--role={name}", f"--user={USER}"
    )


def as_user(cluster: Cluster, *args: str, stdin: str | None = None) -> Result:
    return cluster.kubectl(*args, f"--as={USER}", input=stdin, check=False)


def create(cluster: Cluster, namespace: str, body: dict[str, Any], dry_run: bool = True) -> Result:
    """``kubectl create`` of ``body`` as USER (server-side dry run unless ``dry_run`` is off)."""
    args = ["create", "-n", namespace, "-f", "-"]
    return as_user(
        cluster, *args, *(["--dry-run=server"] if dry_run else []), stdin=yaml.safe_dump(body)
    )


def queuejob_user(cluster: Cluster, namespace: str) -> None:
    """USER may create, get and patch QueueJobs in ``namespace``, nothing else; returns once the
    policy is seen refusing them a QueueJob (it acts once the API server has loaded it)."""
    grant(cluster, namespace, "qj", "create,get,patch", "queuejobs.workqueue.example.com")
    body = queuejob("probe", namespace, items=["a"])
    refused(lambda: create(cluster, namespace, body), jobs_message(namespace))


def items_from(namespace: str, *refs: str) -> dict[str, Any]:
    """A QueueJob with items from the ConfigMaps ``refs`` (key ``items`` of each)."""
    source: dict[str, Any]
    if len(refs) == 1:
        source = {"configMapKeyRef": {"name": refs[0], "key": "items"}}
    else:
        source = {"configMapKeyRefs": [{"name": r, "key": "items"} for r in refs]}
    return queuejob("from-cm", namespace, itemsFrom=source)


def test_creating_or_changing_a_queuejob_needs_create_jobs(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    queuejob_user(cluster, namespace)
    body = queuejob("held", namespace, items=["a", "b"], suspend=True)
    grant(cluster, namespace, "jobs", "create", "jobs.batch")
    allowed(lambda: create(cluster, namespace, body, dry_run=False))
    # The operator's writes (finalizer, status) pass the policy.
    operator.wait_phase(namespace, "held", ("Suspended",), timeout=120)
    assert operator.get_qj(namespace, "held")["metadata"].get("finalizers")

    # Without the right the spec cannot change; metadata can (the policy does not look at it).
    cluster.kubectl("delete", "rolebinding", "jobs", "-n", namespace)
    patch = json.dumps({"spec": {"parallelism": 3}})
    refused(
        lambda: as_user(
            cluster, "patch", "qj", "held", "-n", namespace, "--type=merge", "-p", patch
        ),
        jobs_message(namespace),
    )
    allowed(lambda: as_user(cluster, "label", "qj", "held", "-n", namespace, "team=a"))
    assert operator.get_qj(namespace, "held")["spec"]["parallelism"] == 1


def test_items_from_configmaps_need_get_on_each(cluster: Cluster, namespace: str) -> None:
    queuejob_user(cluster, namespace)
    grant(cluster, namespace, "jobs", "create", "jobs.batch")
    for name in ("mine", "theirs", "other"):
        cluster.kubectl("create", "configmap", name, "-n", namespace, "--from-literal=items=x")
    why = "spec.itemsFrom would have the operator read it for you"

    one = items_from(namespace, "mine")
    refused(lambda: create(cluster, namespace, one), may_not(namespace, "get configmaps mine", why))
    grant(cluster, namespace, "read-mine", "get", "configmaps", "mine")
    allowed(lambda: create(cluster, namespace, one))

    # Two ConfigMaps: each is checked by name; the message names the one not readable.
    for refs in (("mine", "theirs"), ("theirs", "mine")):
        two = items_from(namespace, *refs)
        refused(
            functools.partial(create, cluster, namespace, two),
            may_not(namespace, "get configmaps theirs", why),
        )
    grant(cluster, namespace, "read-theirs", "get", "configmaps", "theirs")
    allowed(lambda: create(cluster, namespace, items_from(namespace, "theirs", "mine")))

    # More than two need the right on every ConfigMap of the namespace.
    three = items_from(namespace, "mine", "theirs", "other")
    refused(
        lambda: create(cluster, namespace, three),
        may_not(
            namespace,
            "get configmaps",
            "spec.itemsFrom names more than two ConfigMaps, which needs that right on all of "
            "them (two are checked by name)",
        ),
    )
    grant(cluster, namespace, "read-all", "get", "configmaps")
    allowed(lambda: create(cluster, namespace, three))


def test_a_redis_password_secret_needs_get_on_it(cluster: Cluster, namespace: str) -> None:
    queuejob_user(cluster, namespace)
    grant(cluster, namespace, "jobs", "create", "jobs.batch")
    cluster.kubectl(
        "create", "secret", "generic", "team-redis", "-n", namespace, "--from-literal=password=x"
    )
    body = queuejob(
        "own-redis",
        namespace,
        items=["a"],
        redis={
            "url": "redis://redis.example.invalid:6379/0",
            "passwordSecretRef": {"name": "team-redis", "key": "password"},
        },
    )
    refused(
        lambda: create(cluster, namespace, body),
        may_not(
            namespace,
            "get secrets team-redis",
            "spec.redis.passwordSecretRef would have the operator read it for you",
        ),
    )
    grant(cluster, namespace, "read-redis", "get", "secrets", "team-redis")
    allowed(lambda: create(cluster, namespace, body))


def test_an_add_request_needs_get_on_its_configmap(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    operator.apply(
        queuejob(
            "guarded",
            namespace,
            items=["a"],
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.05"}]},
        )
    )
    cluster.kubectl("create", "configmap", "payroll", "-n", namespace, "--from-literal=items=x")
    # What `kubectl queuejob add` needs (get and patch QueueJobs, create ConfigMaps), no reads.
    queuejob_user(cluster, namespace)
    grant(cluster, namespace, "cm", "create", "configmaps")
    grant(cluster, namespace, "read-decoy", "get", "configmaps", "decoy")
    operator.wait_phase(namespace, "guarded", ("Succeeded",), timeout=180)

    def annotate(request: str) -> Result:
        args = ("annotate", "--overwrite", "qj", "guarded", "-n", namespace)
        return as_user(cluster, *args, f"{REQUEST}={request}")

    refused(
        lambda: annotate('{"id": "r1", "action": "add", "configMap": "payroll"}'),
        may_not(
            namespace,
            "get configmaps payroll",
            f"the add request in annotation {REQUEST} would have the operator read it for you",
        ),
    )
    # A second "configMap" member (the operator reads the last one) is checked too.
    refused(
        lambda: annotate(
            '{"id": "r2", "action": "add", "configMap": "decoy", "configMap": "payroll"}'
        ),
        may_not(
            namespace,
            "get configmaps",
            f"the request in annotation {REQUEST} names several ConfigMaps (decoy, payroll), "
            "which needs that right on all of them",
        ),
    )
    # A member or name hidden behind \u escapes is refused outright.
    refused(
        lambda: annotate('{"id": "r3", "action": "add", "config\\u004dap": "payroll"}'),
        f"annotation {REQUEST} must not write letters, digits, '-' or '.' as \\u00XX escapes",
    )
    # A redrive names no ConfigMap: patching the QueueJob is enough (non-ASCII escapes pass).
    allowed(lambda: annotate('{"id": "r4", "action": "redrive", "items": ["\\u00e9t\\u00e9"]}'))

    # The plugin's own ConfigMap needs get as well, and the refusal reaches its user.
    plugin = [sys.executable, "-m", "queuejob_kubectl", f"--kubeconfig={cluster.kubeconfig}"]
    argv = [*plugin, f"--as={USER}", "add", "guarded", "late", "-n", namespace, "--timeout=120"]
    denied = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert denied.returncode == 1, denied.stdout
    pattern = (
        re.escape(DENIED) + rf"user {USER} may not get configmaps guarded-add-\S+ in namespace"
    )
    assert denied.stderr.startswith("error: forbidden: ") and re.search(pattern, denied.stderr), (
        denied.stderr
    )

    grant(cluster, namespace, "read-all", "get", "configmaps")
    added = allowed(
        lambda: subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    )
    assert "1 item added" in added.stdout
    operator.wait_phase(namespace, "guarded", ("Succeeded",), timeout=180)
    assert operator.queue(namespace, "guarded").succeeded_items() == {"a", "late"}
