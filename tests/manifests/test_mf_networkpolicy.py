"""The Redis NetworkPolicy selects exactly the pods it is meant to.

Label selectors are evaluated here against the real pod templates: the Redis Deployment's (the
policy's target), the operator Deployment's and the worker Job the operator builds (both
admitted), pods missing any of the workers' labels and the fine-parallel pods (not admitted:
they have their own Redis). A label change on either side that would silently cut the workers
off Redis, or open it to other pods, fails. The API server's acceptance of the object is checked
with manifests/deploy (test_mf_dryrun.py); no test here can check enforcement, which is the
network plugin's (the local nodes have none that enforces NetworkPolicy).
"""

from __future__ import annotations

from typing import Any

from mf_support import REPO, load_docs

from queuejob import jobs, spec

DEPLOY = REPO / "manifests" / "deploy"


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
            "In": labels.get(key) in values,
            "NotIn": key not in labels or labels[key] not in values,
        }[op]
        if not ok:
            return False
    return True


def _policy() -> dict[str, Any]:
    (policy,) = load_docs((DEPLOY / "networkpolicy.yaml").read_text())
    return policy


def _admitted(labels: dict[str, str], same_namespace: bool) -> bool:
    """Whether a pod with ``labels`` may reach Redis under the policy's ingress rules."""
    for rule in _policy()["spec"]["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" not in peer and not same_namespace:
                continue
            if _matches(peer.get("podSelector", {}), labels):
                return True
    return False


def _template_labels(path: str, kind: str, name: str) -> dict[str, str]:
    for doc in load_docs((REPO / path).read_text()):
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            template = doc if kind == "Pod" else doc["spec"]["template"]
            return dict(template["metadata"]["labels"])
    raise AssertionError(f"{kind} {name} not in {path}")


def _worker_labels() -> dict[str, str]:
    body = {"metadata": {"name": "q", "namespace": "team-a", "uid": "1234-5678"}}
    job = jobs.build_job(
        body,
        spec.parse({"items": ["a"]}),
        queue="qj:team-a:q:12345678",
        redis_url="redis://redis.queuejob-system.svc:6379/0",
        default_image="queuejob:dev",
        image_pull_policy="IfNotPresent",
        backoff_limit=1,
    )
    return dict(job["spec"]["template"]["metadata"]["labels"])


def test_policy_targets_the_redis_pods_only() -> None:
    target = _policy()["spec"]["podSelector"]
    redis = _template_labels("manifests/deploy/redis.yaml", "Deployment", "redis")
    operator = _template_labels("manifests/deploy/operator.yaml", "Deployment", "queuejob-operator")
    assert _matches(target, redis)
    assert not _matches(target, operator)
    assert _policy()["spec"]["policyTypes"] == ["Ingress"]


def test_operator_and_workers_are_admitted() -> None:
    operator = _template_labels("manifests/deploy/operator.yaml", "Deployment", "queuejob-operator")
    assert _admitted(operator, same_namespace=True)
    assert set(_worker_labels()) == {"app.kubernetes.io/name", "workqueue.example.com/queuejob"}
    assert _admitted(_worker_labels(), same_namespace=False)
    assert _admitted(_worker_labels(), same_namespace=True)
    # The Job controller adds its own labels to the pods; they change nothing.
    controller = {"batch.kubernetes.io/job-name": "q-workers", "job-name": "q-workers"}
    assert _admitted({**_worker_labels(), **controller}, same_namespace=False)


def test_only_tcp_6379_is_opened() -> None:
    (rule,) = _policy()["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_other_pods_are_not_admitted() -> None:
    assert not _admitted({}, same_namespace=True)
    assert not _admitted({}, same_namespace=False)
    # The operator's label admits only in the operator's own namespace.
    assert not _admitted({"app.kubernetes.io/name": "queuejob-operator"}, same_namespace=False)
    # A worker needs both labels of the operator's worker pods.
    worker = _worker_labels()
    for key in worker:
        partial = {k: v for k, v in worker.items() if k != key}
        assert not _admitted(partial, same_namespace=False), partial
        assert not _admitted(partial, same_namespace=True), partial
    # Only the QueueJob label (as on the plugin's ConfigMaps) is not enough.
    assert not _admitted({"workqueue.example.com/queuejob": "q"}, same_namespace=False)
    # The Redis pod itself is no client.
    redis = _template_labels("manifests/deploy/redis.yaml", "Deployment", "redis")
    assert not _admitted(redis, same_namespace=True)
    for name, kind, path in (
        ("job-wq-2", "Job", "manifests/fine-parallel/job.yaml"),
        ("redis-master", "Pod", "manifests/fine-parallel/redis-pod.yaml"),
    ):
        assert not _admitted(_template_labels(path, kind, name), same_namespace=False)
