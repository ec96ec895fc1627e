"""The operator's RBAC checked from inside the operator pod, with its projected token.

test_mf_rbac.py asks the API server about the ServiceAccount (``kubectl auth can-i --as``);
test_mf_rbac_live.py runs the operator on a token of it. Here the requests come from the running
operator pod of ``make deploy-local`` on the session's real node: ``kubectl exec`` runs Python in
the operator container, which reads the kubelet-mounted projected ServiceAccount token and the
cluster CA, reaches the API server through the ``kubernetes`` Service, and

- asks a SelfSubjectAccessReview for every grant of :data:`test_mf_rbac.GRANTS` and
  :data:`~test_mf_rbac.LEASE_GRANTS` (all allowed) and for every call of
  :data:`~test_mf_rbac.DENIED` and :data:`~test_mf_rbac.LEASE_DENIED` (all refused);
- makes real requests: allowed ones must answer 200, forbidden ones 403 (those that would change
  something are sent with ``dryRun=All``; authorization comes first, so they are still refused).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_mf_rbac import DENIED, GRANTS, LEASE_DENIED, LEASE_GRANTS

from fixtures.cluster import Cluster
from fixtures.realnode import RealNodeCluster
from localkube import deploy

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(300)]
NS = deploy.NAMESPACE
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CLUSTER_SCOPED = {"customresourcedefinitions", "nodes", "namespaces", "clusterroles"}
CLUSTER_SCOPED |= {"clusterrolebindings"}

#: Real requests from the pod: (method, path, expected HTTP status).
REQUESTS: tuple[tuple[str, str, int], ...] = (
    ("GET", "/apis/workqueue.example.com/v1alpha1/queuejobs", 200),
    ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/queuejob-operator", 200),
    ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", 200),
    ("GET", "/api/v1/secrets", 403),
    ("GET", f"/api/v1/namespaces/{NS}/secrets", 403),
    ("GET", "/api/v1/nodes", 200),
    ("GET", "/api/v1/pods?labelSelector=app.kubernetes.io%2Fname%3Dqueuejob", 200),
    ("GET", "/api/v1/nodes/localkube-node", 403),
    ("GET", "/api/v1/namespaces/default/pods/any", 403),
    ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases", 403),
    ("DELETE", "/api/v1/namespaces/default?dryRun=All", 403),
    ("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/queuejob-operator"
               "?dryRun=All", 403),
    ("POST", "/api/v1/namespaces/default/pods?dryRun=All", 403),
)  # fmt: skip

#: Runs in the operator container (its Python): reads the checks as JSON from stdin and prints
#: the answers as JSON. Nothing is written to the (read-only) root filesystem.
POD_SCRIPT = r"""
import json, os, ssl, sys, urllib.error, urllib.request
checks = json.loads(sys.stdin.readline())
env = os.environ
base = "https://%s:%s" % (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"])
context = ssl.create_default_context(cafile="TOKEN_DIR/ca.crt")
token = open("TOKEN_DIR/token").read().strip()

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + token)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")

reviews = []
for attributes in checks["reviews"]:
    status, answer = call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes}})
    reviews.append([status, answer.get("status", {}).get("allowed", False)])
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
       "spec": {"containers": [{"name": "x", "image": "x"}]}}
requests = [call(m, p, pod if m == "POST" else None)[0] for m, p in checks["requests"]]
status, review = call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
print(json.dumps({"reviews": reviews, "requests": requests,
                  "user": review.get("status", {}).get("userInfo", {})}))
""".replace("TOKEN_DIR", TOKEN_DIR)


def _attributes(verb: str, resource: str, extra: tuple[str, ...]) -> dict[str, str]:
    """A ``kubectl auth can-i`` call of test_mf_rbac.py as SSAR resourceAttributes."""
    what, _, name = resource.partition("/")
    plural, _, group = what.partition(".")
    attributes = {"verb": verb, "group": group, "resource": plural, "name": name}
    namespace = "" if plural in CLUSTER_SCOPED else "default"
    args = list(extra)
    while args:
        arg = args.pop(0)
        if arg == "-n":
            namespace = args.pop(0)
        elif arg == "--all-namespaces":
            namespace = ""
        elif arg.startswith("--subresource="):
            attributes["subresource"] = arg.partition("=")[2]
        else:
            raise ValueError(f"unmapped kubectl argument {arg!r}")
    attributes["namespace"] = namespace
    return attributes


def _allowed_reviews() -> list[dict[str, str]]:
    out = []
    for group, resource, verb in sorted(GRANTS):
        plural, _, sub = resource.partition("/")
        attributes = {"verb": verb, "group": group, "resource": plural, "subresource": sub}
        attributes["namespace"] = "" if plural in CLUSTER_SCOPED else "default"
        out.append(attributes)
    for group, plural, verb, names in sorted(LEASE_GRANTS):
        out.append({"verb": verb, "group": group, "resource": plural,
                    "namespace": NS, "name": names[0] if names else ""})  # fmt: skip
    return out


def _operator_pod(node: Cluster) -> dict[str, Any]:
    pods = node.kubectl_json(
        "get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=queuejob-operator"
    )["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert running, [p["status"] for p in pods]
    pod: dict[str, Any] = running[0]
    return pod


def test_operator_pod_token_gets_exactly_its_grants(
    deployed_real_node: RealNodeCluster,
) -> None:
    node = deployed_real_node.cluster
    pod = _operator_pod(node)
    name = pod["metadata"]["name"]
    allowed = _allowed_reviews()
    denied = [_attributes(*call) for call in (*DENIED, *LEASE_DENIED)]
    checks = {"reviews": allowed + denied, "requests": [[m, p] for m, p, _ in REQUESTS]}
    result = node.kubectl(
        "exec", "-i", "-n", NS, name, "-c", "operator", "--", "python", "-c", POD_SCRIPT,
        input=json.dumps(checks) + "\n",
    )  # fmt: skip
    answers = json.loads(result.stdout)

    # The requests were made as the pod's ServiceAccount, on the token bound to this pod.
    user = answers["user"]
    assert user["username"] == f"system:serviceaccount:{NS}:queuejob-operator", user
    assert user.get("extra", {}).get("authentication.kubernetes.io/pod-name") == [name], user
    reviews = answers["reviews"]
    assert all(status == 201 for status, _ in reviews), reviews
    refused = [a for a, (_, ok) in zip(allowed, reviews[: len(allowed)], strict=True) if not ok]
    assert not refused, f"grants the pod's token is refused: {refused}"
    granted = [a for a, (_, ok) in zip(denied, reviews[len(allowed) :], strict=True) if ok]
    assert not granted, f"calls the pod's token may make but must not: {granted}"
    got = dict(zip([f"{m} {p}" for m, p, _ in REQUESTS], answers["requests"], strict=True))
    want = {f"{m} {p}": status for m, p, status in REQUESTS}
    assert got == want
