"""The operator's ServiceAccount may make exactly the API calls the operator makes.

Three checks:
- the ClusterRole in manifests/deploy grants exactly :data:`GRANTS` (nothing more);
- every Kubernetes client call and kopf handler in ``operator/queuejob`` maps onto a grant, so
  a new API call in the code fails here until the RBAC is extended;
- ``kubectl auth can-i --as=<the ServiceAccount>`` on the real API server says yes to every
  grant and no to a sample of calls the operator must never make.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from mf_support import OPERATOR_SA, REPO

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
        # queuejob.kube: ensure_secret, read_secret_key (by name: no list, no watch).
        ("", "secrets", "create"),
        ("", "secrets", "get"),
        ("", "secrets", "patch"),
        # queuejob.kube: read_configmap_key (spec.itemsFrom).
        ("", "configmaps", "get"),
        # kopf: Kubernetes events about handlers.
        ("", "events", "create"),
    }
)

#: Calls the operator must not be able to make: (verb, resource, extra kubectl args).
DENIED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("list", "secrets", ("--all-namespaces",)),
    ("watch", "secrets", ("--all-namespaces",)),
    ("list", "secrets", ("-n", "default")),
    ("delete", "secrets", ("-n", "default")),
    ("delete", "nodes", ()),
    ("get", "nodes", ()),
    ("create", "clusterroles.rbac.authorization.k8s.io", ()),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ()),
    ("create", "rolebindings.rbac.authorization.k8s.io", ("-n", "default")),
    ("create", "pods", ("-n", "default")),
    ("create", "pods", ("-n", "default", "--subresource=exec")),
    ("delete", "namespaces", ()),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", ()),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ()),
    ("delete", "jobs.batch", ("-n", "default")),
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
    missing = needed - GRANTS
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
    if name in ("customresourcedefinitions",):
        scopes = [[]]
    elif verb in ("list", "watch") and name == "queuejobs":
        scopes.append(["--all-namespaces"])
    for scope in scopes:
        assert _can_i(cluster, verb, full, *extra, *scope), f"denied: {verb} {resource} {scope}"


@pytest.mark.parametrize("call", DENIED, ids=lambda c: f"{c[0]}-{c[1]}-{'-'.join(c[2])}")
def test_service_account_may_not(
    cluster: Any, deployed: list[dict[str, Any]], call: tuple[str, str, tuple[str, ...]]
) -> None:
    verb, resource, extra = call
    assert not _can_i(cluster, verb, resource, *extra), f"allowed: {verb} {resource} {extra}"
