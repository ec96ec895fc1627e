"""The operator's ServiceAccount may make exactly the API calls the operator makes.

Four checks:
- the ClusterRole in manifests/deploy grants exactly :data:`GRANTS` (nothing more);
- the leader-election Role grants exactly :data:`LEASE_GRANTS` in queuejob-system, get and
  update only on the operator's Lease by name;
- every Kubernetes client call and kopf handler in ``operator/queuejob`` maps onto a grant, so
  a new API call in the code fails here until the RBAC is extended;
- ``kubectl auth can-i --as=<the ServiceAccount>`` on the real API server says yes to every
  grant and no to a sample of calls the operator must never make (:data:`DENIED`,
  :data:`LEASE_DENIED`).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from mf_support import DEPLOY_NS, OPERATOR_SA, REPO

from queuejob.settings import OperatorSettings

pytestmark = [pytest.mark.timeout(300)]

QJ = "queuejobs.workqueue.example.com"

#: (API group, resource[/subresource], verb) the operator needs, with who needs it.
GRANTS: frozenset[tuple[str, str, str]] = frozenset(
    {
        # kopf: resource discovery follows CRDs.
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        # kopf: the watch stream, finalizers/annotations (patch), status (patch).
        ("workqueue.example.com", "queuejobs", "list"),
        ("workqueue.example.com", "queuejobs", "watch"),
        ("workqueue.example.com", "queuejobs", "patch"),
        ("workqueue.example.com", "queuejobs/status", "patch"),
        # ownerReferences with blockOwnerDeletion on the Job and the Secret.
        ("workqueue.example.com", "queuejobs/finalizers", "update"),
        # queuejob.kube: ensure_job, read_job, patch_job.
        ("batch", "jobs", "create"),
        ("batch", "jobs", "get"),
        ("batch", "jobs", "patch"),
        # queuejob.kube.delete_job: a finished Job re-created (queuejob.operate).
        ("batch", "jobs", "delete"),
        # kopf's watch of the worker Jobs (queuejob.handlers.events): status changes refresh.
        ("batch", "jobs", "list"),
        ("batch", "jobs", "watch"),
        # queuejob.kube: ensure_secret, read_secret_key (by name: no list, no watch).
        ("", "secrets", "create"),
        ("", "secrets", "get"),
        ("", "secrets", "patch"),
        # queuejob.kube: read_configmap_key (spec.itemsFrom).
        ("", "configmaps", "get"),
        # kopf: Kubernetes events about handlers.
        ("", "events", "create"),
        # queuejob.kube: list_nodes, list_pods_on_node, patch_pod_status, force_delete_pod
        # (worker pods on a lost node, queuejob.nodeloss).
        ("", "nodes", "list"),
        ("", "pods", "list"),
        ("", "pods", "delete"),
        ("", "pods/status", "patch"),
    }
)

LEASES = "leases.coordination.k8s.io"
#: The leader election's Lease (the Role names it; the Deployment does not override the name).
LEASE_NAME = OperatorSettings().leader_election_name

#: (API group, resource, verb, resourceNames) of the leader-election Role in queuejob-system
#: (queuejob.leaselock: read_namespaced_lease, create_namespaced_lease, replace_namespaced_lease).
#: ``create`` cannot be limited by name: the authorizer does not know the name of a new object.
LEASE_GRANTS: frozenset[tuple[str, str, str, tuple[str, ...]]] = frozenset(
    {
        ("coordination.k8s.io", "leases", "get", (LEASE_NAME,)),
        ("coordination.k8s.io", "leases", "update", (LEASE_NAME,)),
        ("coordination.k8s.io", "leases", "create", ()),
    }
)

#: Lease calls the operator must not be able to make: (verb, resource, extra kubectl args).
LEASE_DENIED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("get", f"{LEASES}/another-lease", ("-n", DEPLOY_NS)),
    ("update", f"{LEASES}/another-lease", ("-n", DEPLOY_NS)),
    ("patch", f"{LEASES}/{LEASE_NAME}", ("-n", DEPLOY_NS)),
    ("delete", f"{LEASES}/{LEASE_NAME}", ("-n", DEPLOY_NS)),
    ("list", LEASES, ("-n", DEPLOY_NS)),
    ("watch", LEASES, ("-n", DEPLOY_NS)),
    ("get", f"{LEASES}/{LEASE_NAME}", ("-n", "default")),
    ("update", f"{LEASES}/kube-controller-manager", ("-n", "kube-system")),
    ("create", LEASES, ("-n", "kube-system")),
    ("create", LEASES, ("-n", "default")),
    ("list", LEASES, ("--all-namespaces",)),
)

#: Calls the operator must not be able to make: (verb, resource, extra kubectl args).
DENIED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("list", "secrets", ("--all-namespaces",)),
    ("watch", "secrets", ("--all-namespaces",)),
    ("list", "secrets", ("-n", "default")),
    ("delete", "secrets", ("-n", "default")),
    ("delete", "nodes", ()),
    ("get", "nodes", ()),
    ("watch", "nodes", ()),
    ("patch", "nodes", ()),
    ("update", "nodes", ("--subresource=status",)),
    ("get", "pods", ("-n", "default")),
    ("update", "pods", ("-n", "default")),
    ("patch", "pods", ("-n", "default")),
    ("update", "pods", ("-n", "default", "--subresource=status")),
    ("create", "pods", ("-n", "default", "--subresource=eviction")),
    ("deletecollection", "pods", ("-n", "default")),
    ("create", "clusterroles.rbac.authorization.k8s.io", ()),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ()),
    ("create", "rolebindings.rbac.authorization.k8s.io", ("-n", "default")),
    ("create", "pods", ("-n", "default")),
    ("create", "pods", ("-n", "default", "--subresource=exec")),
    ("delete", "namespaces", ()),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", ()),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ()),
    ("deletecollection", "jobs.batch", ("-n", "default")),
    ("update", "configmaps", ("-n", "default")),
    ("create", "serviceaccounts", ("-n", "default", "--subresource=token")),
    ("impersonate", "serviceaccounts", ("-n", "default")),
    ("delete", QJ, ("-n", "default")),
    ("create", QJ, ("-n", "default")),
)

# Kubernetes client method -> (group, resource, verb).
_VERBS = {
    "create": "create",
    "read": "get",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
    "list": "list",
}
_RESOURCES = {
    "job": ("batch", "jobs"),
    "secret": ("", "secrets"),
    "config_map": ("", "configmaps"),
    "event": ("", "events"),
    "pod": ("", "pods"),
    "custom_object": ("workqueue.example.com", "queuejobs"),
    "custom_object_status": ("workqueue.example.com", "queuejobs/status"),
    "lease": ("coordination.k8s.io", "leases"),
}
_CALL = re.compile(
    r"\.(create|read|patch|replace|delete|list)_namespaced_(\w+?)(?:_with_http_info)?\("
)
_GET_CO = re.compile(r"\.get_namespaced_custom_object(_status)?\(")
_KOPF = re.compile(r"@kopf\.(?:on\.\w+|timer|daemon|index)\(([^)]*)\)", re.S)


def _operator_sources() -> dict[str, str]:
    """Operator code run in-cluster (demo modules run with the user's kubeconfig instead)."""
    root = REPO / "operator" / "queuejob"
    return {
        str(p.relative_to(REPO)): p.read_text()
        for p in sorted(root.rglob("*.py"))
        if not p.name.startswith("demo")
    }


def _cluster_role(cluster: Any) -> dict[str, Any]:
    role: dict[str, Any] = cluster.kubectl_json("get", "clusterrole", "queuejob-operator")
    return role


def _can_i(cluster: Any, verb: str, resource: str, *extra: str) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, f"--as={OPERATOR_SA}", *extra, check=False
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def _split(resource: str) -> tuple[str, str | None]:
    name, _, sub = resource.partition("/")
    return name, sub or None


def test_code_calls_are_all_granted() -> None:
    sources = _operator_sources()
    assert any("kube.py" in name for name in sources), sources.keys()
    needed: set[tuple[str, str, str]] = set()
    for name, text in sources.items():
        for verb, kind in _CALL.findall(text):
            assert kind in _RESOURCES, f"{name}: unmapped API call *_namespaced_{kind}: add RBAC"
            group, resource = _RESOURCES[kind]
            needed.add((group, resource, _VERBS[verb]))
        for status in _GET_CO.findall(text):
            needed.add(
                ("workqueue.example.com", "queuejobs" + ("/status" if status else ""), "get")
            )
        for args in _KOPF.findall(text):
            # A kopf handler on another resource (e.g. "jobs") needs its list/watch/patch.
            words = set(re.findall(r"['\"]([\w.\-/]+)['\"]", args))
            for group, plural in _RESOURCES.values():
                if plural in words and plural != "queuejobs":
                    needed |= {(group, plural, v) for v in ("list", "watch", "patch")}
    assert needed, "no API call found in operator/queuejob: the scan is broken"
    lease_needed = {grant for grant in needed if grant[1] == "leases"}
    assert lease_needed == {g[:3] for g in LEASE_GRANTS}, "the Lease calls changed: adapt the Role"
    missing = needed - lease_needed - GRANTS
    assert not missing, f"operator code makes calls its RBAC does not allow: {sorted(missing)}"


def test_cluster_role_grants_exactly_the_needed_verbs(
    cluster: Any, deployed: list[dict[str, Any]]
) -> None:
    granted: set[tuple[str, str, str]] = set()
    for rule in _cluster_role(cluster)["rules"]:
        assert "resourceNames" not in rule or rule["resourceNames"]
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    assert "*" not in (group, resource, verb), rule
                    granted.add((group, resource, verb))
    assert granted == GRANTS, (
        f"extra: {sorted(granted - GRANTS)}; missing: {sorted(GRANTS - granted)}"
    )


@pytest.mark.parametrize("grant", sorted(GRANTS), ids=lambda g: f"{g[2]}-{g[1]}")
def test_service_account_may(
    cluster: Any, deployed: list[dict[str, Any]], grant: tuple[str, str, str]
) -> None:
    group, resource, verb = grant
    name, sub = _split(resource)
    full = f"{name}.{group}" if group else name
    extra = [f"--subresource={sub}"] if sub else []
    scopes = [["-n", "default"], ["-n", "kube-public"]]
    if name in ("customresourcedefinitions", "nodes"):
        scopes = [[]]
    elif verb in ("list", "watch") and name in ("queuejobs", "pods"):
        scopes.append(["--all-namespaces"])
    for scope in scopes:
        assert _can_i(cluster, verb, full, *extra, *scope), f"denied: {verb} {resource} {scope}"


@pytest.mark.parametrize("call", DENIED, ids=lambda c: f"{c[0]}-{c[1]}-{'-'.join(c[2])}")
def test_service_account_may_not(
    cluster: Any, deployed: list[dict[str, Any]], call: tuple[str, str, tuple[str, ...]]
) -> None:
    verb, resource, extra = call
    assert not _can_i(cluster, verb, resource, *extra), f"allowed: {verb} {resource} {extra}"


def test_lease_role_grants_exactly_the_lease_verbs(
    cluster: Any, deployed: list[dict[str, Any]]
) -> None:
    role = cluster.kubectl_json("get", "role", "queuejob-operator-leader-election", "-n", DEPLOY_NS)
    granted = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb, tuple(rule.get("resourceNames", ()))))
    assert granted == LEASE_GRANTS, (
        f"extra: {granted - LEASE_GRANTS}; missing: {LEASE_GRANTS - granted}"
    )
    binding = cluster.kubectl_json(
        "get", "rolebinding", "queuejob-operator-leader-election", "-n", DEPLOY_NS
    )
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "queuejob-operator-leader-election",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "queuejob-operator", "namespace": DEPLOY_NS}
    ]


@pytest.mark.parametrize("verb", ["get", "update", "create"])
def test_service_account_may_hold_its_lease(
    cluster: Any, deployed: list[dict[str, Any]], verb: str
) -> None:
    target = LEASES if verb == "create" else f"{LEASES}/{LEASE_NAME}"
    assert _can_i(cluster, verb, target, "-n", DEPLOY_NS), f"denied: {verb} {target}"


@pytest.mark.parametrize("call", LEASE_DENIED, ids=lambda c: f"{c[0]}-{c[1]}-{'-'.join(c[2])}")
def test_service_account_may_not_touch_other_leases(
    cluster: Any, deployed: list[dict[str, Any]], call: tuple[str, str, tuple[str, ...]]
) -> None:
    verb, resource, extra = call
    assert not _can_i(cluster, verb, resource, *extra), f"allowed: {verb} {resource} {extra}"
