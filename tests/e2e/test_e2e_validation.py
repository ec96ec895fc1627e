"""The QueueJob CRD's validation, printer columns and scale subresource, on a real API server.

Every invalid QueueJob below is sent to the API server (``kubectl apply --dry-run=server``, which
runs defaulting, OpenAPI validation and the CEL rules exactly as a real create does) and must be
rejected with a message that names the offending field and says why. The examples shipped in
``manifests/examples`` must all be accepted. No operator is needed: this is the API server's job.
"""

from __future__ import annotations

import copy
import json
import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "queuejobs.workqueue.example.com.yaml"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
GROUP = "workqueue.example.com"
VERSION = "v1alpha1"


@pytest.fixture(scope="module")
def crd(cluster: Any) -> Iterator[Any]:
    """Apply the CRD (idempotent; other modules may share it) and wait until it is Established."""
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        f"crd/queuejobs.{GROUP}",
    )
    # Discovery for a fresh CRD can lag a moment behind Established: wait until kubectl knows `qj`.
    deadline = time.monotonic() + 60
    while cluster.kubectl("get", "qj", "-A", check=False).returncode != 0:
        assert time.monotonic() < deadline, "kubectl never discovered the qj short name"
        time.sleep(0.5)
    yield cluster


@pytest.fixture(scope="module")
def namespace(crd: Any) -> Iterator[str]:
    """Overrides the per-test fixture: one namespace for this module (names are unique)."""
    name = f"t-validation-{uuid.uuid4().hex[:6]}"
    crd.kubectl("create", "namespace", name)
    yield name
    crd.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def queuejob(name: str = "bad", **spec: Any) -> dict[str, Any]:
    """A QueueJob manifest; ``spec`` defaults to a valid one with inline items."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "QueueJob",
        "metadata": {"name": name},
        "spec": spec if spec else {"items": ["a", "b"]},
    }


def with_spec(**changes: Any) -> dict[str, Any]:
    """A valid QueueJob (inline items) with ``changes`` merged into its spec."""
    obj = queuejob()
    obj["spec"].update(changes)
    return obj


def dry_run(cluster: Any, namespace: str, obj: dict[str, Any]) -> Any:
    """``kubectl apply --dry-run=server`` of one object; returns the CompletedProcess."""
    return cluster.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-",
        input=json.dumps(obj),
        check=False,
    )  # fmt: skip


def _long_name() -> dict[str, Any]:
    return queuejob(name="n" * 53, items=["a"])


# (case id, manifest, substrings that must all appear in the API server's error)
INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "no-items-source",
        queuejob(parallelism=1),
        ["spec: Required value", "one of spec.items or spec.itemsFrom is required"],
    ),
    (
        "both-items-sources",
        with_spec(itemsFrom={"configMapKeyRef": {"name": "cm", "key": "items"}}),
        ["spec.itemsFrom: Forbidden", "mutually exclusive"],
    ),
    (
        "duplicate-items",
        queuejob(items=["a", "b", "a"]),
        ["spec.items[2]: Duplicate value", '"a"'],
    ),
    ("empty-items-list", queuejob(items=[]), ["spec.items", "should have at least 1 items"]),
    ("empty-item", queuejob(items=["a", ""]), ["spec.items[1]", "at least 1 chars long"]),
    ("item-too-long", queuejob(items=["x" * 1025]), ["spec.items[0]", "Too long", "1024"]),
    ("item-not-a-string", queuejob(items=["a", 7]), ["spec.items[1]", "must be of type string"]),
    (
        "parallelism-above-100",
        with_spec(parallelism=101),
        ["spec.parallelism", "less than or equal to 100"],
    ),
    (
        "parallelism-negative",
        with_spec(parallelism=-1),
        ["spec.parallelism", "greater than or equal to 0"],
    ),
    (
        "parallelism-not-integer",
        with_spec(parallelism="two"),
        ["spec.parallelism", "must be of type integer"],
    ),
    ("lease-zero", with_spec(leaseSeconds=0), ["spec.leaseSeconds", "greater than or equal to 1"]),
    (
        "lease-above-hour",
        with_spec(leaseSeconds=3601),
        ["spec.leaseSeconds", "less than or equal to 3600"],
    ),
    (
        "max-attempts-zero",
        with_spec(retry={"maxAttempts": 0}),
        ["spec.retry.maxAttempts", "greater than or equal to 1"],
    ),
    (
        "backoff-cap-below-base",
        with_spec(retry={"backoff": {"baseSeconds": 10, "capSeconds": 5}}),
        ["spec.retry.backoff.capSeconds", "capSeconds must be >= baseSeconds"],
    ),
    (
        "backoff-base-below-default-cap",
        with_spec(retry={"backoff": {"baseSeconds": 120}}),
        ["spec.retry.backoff.capSeconds", "capSeconds must be >= baseSeconds"],
    ),
    (
        "backoff-base-zero",
        with_spec(retry={"backoff": {"baseSeconds": 0}}),
        ["spec.retry.backoff.baseSeconds", "greater than 0"],
    ),
    (
        "jitter-above-one",
        with_spec(retry={"backoff": {"jitter": 1.5}}),
        ["spec.retry.backoff.jitter", "less than or equal to 1"],
    ),
    (
        "rate-zero",
        with_spec(rateLimit={"itemsPerSecond": 0}),
        ["spec.rateLimit.itemsPerSecond", "greater than 0"],
    ),
    (
        "rate-missing",
        with_spec(rateLimit={"burst": 5}),
        ["spec.rateLimit.itemsPerSecond: Required value"],
    ),
    (
        "burst-zero",
        with_spec(rateLimit={"itemsPerSecond": 5, "burst": 0}),
        ["spec.rateLimit.burst", "greater than or equal to 1"],
    ),
    (
        "suspend-not-boolean",
        with_spec(suspend="yes"),
        ["spec.suspend", "must be of type boolean"],
    ),
    (
        "ttl-negative",
        with_spec(ttlSecondsAfterFinished=-1),
        ["spec.ttlSecondsAfterFinished", "greater than or equal to 0"],
    ),
    (
        "configmap-key-missing",
        queuejob(itemsFrom={"configMapKeyRef": {"name": "cm"}}),
        ["spec.itemsFrom.configMapKeyRef.key: Required value"],
    ),
    (
        "configmap-name-invalid",
        queuejob(itemsFrom={"configMapKeyRef": {"name": "Bad_Name", "key": "items"}}),
        ["spec.itemsFrom.configMapKeyRef.name", "must be a lowercase RFC 1123 name"],
    ),
    (
        "itemsfrom-empty",
        queuejob(itemsFrom={}),
        [
            "spec.itemsFrom",
            "needs one of spec.itemsFrom.configMapKeyRef, spec.itemsFrom.configMapKeyRefs or "
            "spec.itemsFrom.range",
        ],
    ),
    (
        "itemsfrom-two-sources",
        queuejob(itemsFrom={"configMapKeyRef": {"name": "cm", "key": "k"}, "range": {"count": 5}}),
        ["spec.itemsFrom: Forbidden", "mutually exclusive: set exactly one"],
    ),
    (
        "itemsfrom-list-and-range",
        queuejob(
            itemsFrom={"configMapKeyRefs": [{"name": "cm", "key": "k"}], "range": {"count": 5}}
        ),
        ["spec.itemsFrom: Forbidden", "mutually exclusive: set exactly one"],
    ),
    (
        "configmaps-empty-list",
        queuejob(itemsFrom={"configMapKeyRefs": []}),
        ["spec.itemsFrom.configMapKeyRefs", "should have at least 1 items"],
    ),
    (
        "configmaps-too-many",
        queuejob(
            itemsFrom={"configMapKeyRefs": [{"name": f"c{i}", "key": "k"} for i in range(65)]}
        ),
        ["spec.itemsFrom.configMapKeyRefs", "must have at most 64 items"],
    ),
    (
        "configmaps-duplicate",
        queuejob(
            itemsFrom={"configMapKeyRefs": [{"name": "c", "key": "k"}, {"name": "c", "key": "k"}]}
        ),
        ["spec.itemsFrom.configMapKeyRefs[1]: Duplicate value"],
    ),
    (
        "configmaps-name-invalid",
        queuejob(itemsFrom={"configMapKeyRefs": [{"name": "Bad_Name", "key": "k"}]}),
        ["spec.itemsFrom.configMapKeyRefs[0].name", "must be a lowercase RFC 1123 name"],
    ),
    (
        "configmaps-key-missing",
        queuejob(itemsFrom={"configMapKeyRefs": [{"name": "c"}]}),
        ["spec.itemsFrom.configMapKeyRefs[0].key: Required value"],
    ),
    (
        "range-count-missing",
        queuejob(itemsFrom={"range": {}}),
        ["spec.itemsFrom.range.count: Required value"],
    ),
    (
        "range-count-zero",
        queuejob(itemsFrom={"range": {"count": 0}}),
        ["spec.itemsFrom.range.count", "greater than or equal to 1"],
    ),
    (
        "range-count-above-10m",
        queuejob(itemsFrom={"range": {"count": 10_000_001}}),
        ["spec.itemsFrom.range.count", "less than or equal to 10000000"],
    ),
    (
        "range-start-negative",
        queuejob(itemsFrom={"range": {"start": -1, "count": 5}}),
        ["spec.itemsFrom.range.start", "greater than or equal to 0"],
    ),
    (
        "range-start-above-int32",
        queuejob(itemsFrom={"range": {"start": 2**31, "count": 5}}),
        ["spec.itemsFrom.range.start", "less than or equal to 2147483647"],
    ),
    (
        "range-count-not-integer",
        queuejob(itemsFrom={"range": {"count": "1e6"}}),
        ["spec.itemsFrom.range.count", "must be of type integer"],
    ),
    (
        "range-and-inline-items",
        with_spec(itemsFrom={"range": {"count": 5}}),
        ["spec.itemsFrom: Forbidden", "mutually exclusive"],
    ),
    (
        "redis-url-not-redis",
        with_spec(redis={"url": "http://127.0.0.1:6379"}),
        ["spec.redis.url", "must be redis://[user@]host[:port][/db]"],
    ),
    (
        "redis-url-with-password",
        with_spec(redis={"url": "redis://:hunter2@127.0.0.1:6379/0"}),
        ["spec.redis.url: Forbidden", "must not contain a password", "passwordSecretRef"],
    ),
    (
        "redis-cluster-url-with-password",
        with_spec(redis={"url": "redis+cluster://:hunter2@redis-cluster:6379"}),
        ["spec.redis.url: Forbidden", "must not contain a password", "passwordSecretRef"],
    ),
    (
        "redis-url-unknown-plus-scheme",
        with_spec(redis={"url": "redis+sentinel://127.0.0.1:26379"}),
        ["spec.redis.url", "must be redis://[user@]host[:port][/db]"],
    ),
    (
        "redis-secret-key-missing",
        with_spec(redis={"url": "redis://127.0.0.1:6379/0", "passwordSecretRef": {"name": "s"}}),
        ["spec.redis.passwordSecretRef.key: Required value"],
    ),
    (
        "env-name-invalid",
        with_spec(worker={"env": [{"name": "1BAD-NAME", "value": "x"}]}),
        ["spec.worker.env[0].name", "must be a C identifier"],
    ),
    (
        "env-name-duplicate",
        with_spec(worker={"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
        ["spec.worker.env[1]: Duplicate value"],
    ),
    (
        "env-value-and-value-from",
        with_spec(
            worker={
                "env": [
                    {
                        "name": "A",
                        "value": "1",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                    }
                ]
            }
        ),
        ["spec.worker.env[0].valueFrom: Forbidden", "mutually exclusive"],
    ),
    (
        "command-empty-executable",
        with_spec(worker={"command": ["", "x"]}),
        ["spec.worker.command", "must not be empty"],
    ),
    (
        "resources-bad-quantity",
        with_spec(worker={"resources": {"requests": {"cpu": "lots"}}}),
        ["spec.worker.resources.requests[cpu]", "must be a non-negative quantity"],
    ),
    (
        "resources-negative-quantity",
        with_spec(worker={"resources": {"limits": {"memory": "-1Gi"}}}),
        ["spec.worker.resources.limits[memory]", "must be a non-negative quantity"],
    ),
    (
        "image-with-whitespace",
        with_spec(worker={"image": "queuejob dev"}),
        ["spec.worker.image", "must not contain whitespace"],
    ),
    (
        "redis-secret-key-invalid",
        with_spec(
            redis={
                "url": "redis://127.0.0.1:6379/0",
                "passwordSecretRef": {"name": "s", "key": "pass word"},
            }
        ),
        ["spec.redis.passwordSecretRef.key", "must consist of alphanumerics"],
    ),
    (
        "resources-limit-below-request",
        with_spec(
            worker={"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}}
        ),
        ["spec.worker.resources.limits", "each limit must be >= its request"],
    ),
    (
        "autoscaling-min-above-max",
        with_spec(autoscaling={"minParallelism": 5, "maxParallelism": 3}),
        [
            "spec.autoscaling.minParallelism",
            "minParallelism must be <= spec.autoscaling.maxParallelism",
        ],
    ),
    (
        "autoscaling-max-missing",
        with_spec(autoscaling={"itemsPerWorker": 5}),
        ["spec.autoscaling.maxParallelism: Required value"],
    ),
    (
        "autoscaling-max-zero",
        with_spec(autoscaling={"maxParallelism": 0}),
        ["spec.autoscaling.maxParallelism", "greater than or equal to 1"],
    ),
    (
        "autoscaling-max-above-100",
        with_spec(autoscaling={"maxParallelism": 101}),
        ["spec.autoscaling.maxParallelism", "less than or equal to 100"],
    ),
    (
        "autoscaling-items-per-worker-zero",
        with_spec(autoscaling={"maxParallelism": 3, "itemsPerWorker": 0}),
        ["spec.autoscaling.itemsPerWorker", "greater than or equal to 1"],
    ),
    (
        "autoscaling-window-above-hour",
        with_spec(autoscaling={"maxParallelism": 3, "scaleDownStabilizationSeconds": 3601}),
        ["spec.autoscaling.scaleDownStabilizationSeconds", "less than or equal to 3600"],
    ),
    (
        "name-too-long",
        _long_name(),
        ["metadata.name", "at most 52 characters", "<name>-workers-<index>", "63 characters"],
    ),
    ("name-with-dot", queuejob(name="a.b", items=["a"]), ["metadata.name", "should match"]),
    (
        "unknown-field",
        with_spec(parallelizm=3),
        ["unknown field", "spec.parallelizm"],
    ),
]


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [pytest.param(m, e, id=i) for i, m, e in INVALID],
)
def test_invalid_queuejob_is_rejected_naming_the_field(
    crd: Any, namespace: str, manifest: dict[str, Any], expected: list[str]
) -> None:
    result = dry_run(crd, namespace, manifest)
    assert result.returncode != 0, f"accepted although invalid: {result.stdout}"
    for part in expected:
        assert part in result.stderr, f"{part!r} missing from the error:\n{result.stderr}"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("spec.leaseSeconds", ["1..3600", "default 30"]),
        ("spec.retry.maxAttempts", ["1..100", "default 3"]),
        ("spec.retry.backoff.jitter", ["0..1", "default 0.2"]),
        ("spec.autoscaling.itemsPerWorker", ["1..1000000", "default 10"]),
        ("spec.items", ["at most 10000 entries", "each at most 1024 characters"]),
    ],
)
def test_kubectl_explain_shows_the_default_and_range(
    crd: Any, field: str, expected: list[str]
) -> None:
    # The descriptions carry them (tests/manifests/test_mf_docs.py checks every field against
    # the schema); here the API server's published schema and kubectl show them to a user.
    # The API server publishes a new CRD's OpenAPI schema a moment after it is Established.
    deadline = time.monotonic() + 60
    while (result := crd.kubectl("explain", f"queuejob.{field}", check=False)).returncode:
        assert time.monotonic() < deadline, result.stderr
        time.sleep(1)
    text = " ".join(result.stdout.split())
    for part in expected:
        assert part in text, f"{part!r} missing from kubectl explain queuejob.{field}:\n{text}"


def test_defaults_are_applied(crd: Any, namespace: str) -> None:
    result = dry_run(crd, namespace, queuejob(name="defaults", items=["a"]))
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert spec == {
        "items": ["a"],
        "parallelism": 1,
        "leaseSeconds": 30,
        "retry": {"maxAttempts": 3, "backoff": {"baseSeconds": 1, "capSeconds": 60, "jitter": 0.2}},
        "suspend": False,
    }


def test_autoscaling_defaults_are_applied(crd: Any, namespace: str) -> None:
    manifest = queuejob(name="autoscaled", items=["a"], autoscaling={"maxParallelism": 4})
    result = dry_run(crd, namespace, manifest)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["autoscaling"] == {
        "maxParallelism": 4,
        "minParallelism": 0,
        "itemsPerWorker": 10,
        "scaleDownStabilizationSeconds": 30,
    }
    # min == max and the upper bounds are admitted.
    edge = {
        "minParallelism": 100,
        "maxParallelism": 100,
        "itemsPerWorker": 1000000,
        "scaleDownStabilizationSeconds": 3600,
    }
    result = dry_run(crd, namespace, queuejob(name="edge", items=["a"], autoscaling=edge))
    assert result.returncode == 0, result.stderr


def test_valid_edge_values_are_accepted(crd: Any, namespace: str) -> None:
    """The bounds are inclusive where documented and the URL forms the operator supports pass."""
    obj = queuejob(
        name="e" * 52,  # the longest name the CRD admits
        items=["x" * 1024, "poison-1", "fail-once-1"],
        parallelism=0,
        leaseSeconds=3600,
        retry={"maxAttempts": 100, "backoff": {"baseSeconds": 0.5, "capSeconds": 0.5, "jitter": 1}},
        rateLimit={"itemsPerSecond": 0.5},
        ttlSecondsAfterFinished=0,
        suspend=True,
        redis={
            "url": "rediss://worker@redis.example.svc:6380/2",
            "passwordSecretRef": {"name": "redis-auth", "key": "password"},
        },
        worker={
            "image": "localhost/queuejob:dev",
            "command": ["sh", "-c", 'test -n "$QUEUEJOB_ITEM"'],
            "env": [
                {"name": "_A1", "value": ""},
                {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            "resources": {"requests": {"cpu": "100m", "memory": 64_000_000}, "limits": {"cpu": 1}},
        },
    )
    result = dry_run(crd, namespace, obj)
    assert result.returncode == 0, result.stderr
    for url in ("redis+cluster://redis-cluster.redis.svc:6379", "rediss+cluster://u@10.0.0.7"):
        obj["spec"]["redis"]["url"] = url
        result = dry_run(crd, namespace, obj)
        assert result.returncode == 0, (url, result.stderr)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_server_dry_run(crd: Any, namespace: str, example: pathlib.Path) -> None:
    result = crd.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-f", str(example), check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(example.read_text()) if d]
    assert "QueueJob" in kinds
    assert result.stdout.count("(server dry run)") == len(kinds), result.stdout


def test_range_and_configmap_list_bounds_are_accepted(crd: Any, namespace: str) -> None:
    result = dry_run(crd, namespace, queuejob(name="range-min", itemsFrom={"range": {"count": 1}}))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["itemsFrom"] == {"range": {"start": 0, "count": 1}}
    top = queuejob(name="range-max", itemsFrom={"range": {"start": 2**31 - 1, "count": 10**7}})
    result = dry_run(crd, namespace, top)
    assert result.returncode == 0, result.stderr
    refs = [{"name": f"items-{i}", "key": "items"} for i in range(64)]
    result = dry_run(
        crd, namespace, queuejob(name="maps-max", itemsFrom={"configMapKeyRefs": refs})
    )
    assert result.returncode == 0, result.stderr


def test_range_is_immutable(crd: Any, namespace: str) -> None:
    obj = queuejob(name="range-immutable", itemsFrom={"range": {"count": 1000}}, suspend=True)
    crd.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj))
    for change in ({"count": 1001}, {"start": 1, "count": 1000}):
        changed = copy.deepcopy(obj)
        changed["spec"]["itemsFrom"]["range"] = change
        result = dry_run(crd, namespace, changed)
        assert result.returncode != 0, change
        assert "spec.itemsFrom: Forbidden" in result.stderr, result.stderr
        assert "spec.itemsFrom is immutable" in result.stderr, result.stderr
    switched = copy.deepcopy(obj)
    switched["spec"]["itemsFrom"] = {"configMapKeyRef": {"name": "cm", "key": "k"}}
    result = dry_run(crd, namespace, switched)
    assert result.returncode != 0 and "spec.itemsFrom is immutable" in result.stderr


def test_items_and_redis_are_immutable(crd: Any, namespace: str) -> None:
    obj = queuejob(name="immutable", items=["a", "b"], suspend=True)
    crd.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj))

    changed = copy.deepcopy(obj)
    changed["spec"]["items"] = ["a", "b", "c"]
    result = dry_run(crd, namespace, changed)
    assert result.returncode != 0
    assert "spec.items: Forbidden" in result.stderr and "immutable" in result.stderr

    switched = copy.deepcopy(obj)
    del switched["spec"]["items"]
    switched["spec"]["itemsFrom"] = {"configMapKeyRef": {"name": "cm", "key": "k"}}
    result = dry_run(crd, namespace, switched)
    assert result.returncode != 0
    assert "the source of items" in result.stderr and "immutable" in result.stderr

    with_redis = copy.deepcopy(obj)
    with_redis["spec"]["redis"] = {"url": "redis://127.0.0.1:6379/0"}
    result = dry_run(crd, namespace, with_redis)
    assert result.returncode != 0
    assert "spec.redis: Forbidden" in result.stderr

    # Mutable fields stay mutable.
    scaled = copy.deepcopy(obj)
    scaled["spec"].update(parallelism=5, leaseSeconds=60, suspend=False)
    result = dry_run(crd, namespace, scaled)
    assert result.returncode == 0, result.stderr


def _table(crd: Any, namespace: str, name: str) -> dict[str, Any]:
    """The API server's Table rendering of one QueueJob, with the object it was rendered from."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/queuejobs/{name}"
    request = crd.api.param_serialize(
        "GET",
        path,
        query_params=[("includeObject", "Object")],
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = crd.api.call_api(*request)
    response.read()
    assert response.status == 200, response.data
    table: dict[str, Any] = json.loads(response.data)
    return table


def test_printer_columns(crd: Any, namespace: str) -> None:
    obj = queuejob(name="columns", items=["a", "b", "c", "d"], parallelism=3, suspend=True)
    crd.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj))
    status = {
        "status": {
            "phase": "Running",
            "progress": "2/4",
            "counts": {"total": 4, "pending": 1, "leased": 0, "succeeded": 2, "failed": 1},
            "activeWorkers": 2,
            "workers": {"desired": 3, "current": 2},
            "jobName": "columns-workers",
        }
    }
    crd.kubectl(
        "patch", "-n", namespace, "qj", "columns", "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip

    # kubectl get's row, read between two Table reads of the same resourceVersion: an operator
    # running in this session may rewrite the status (e.g. phase Suspended) at any moment, so
    # the row is compared only with an object that did not change around it.
    for _ in range(10):
        before = _table(crd, namespace, "columns")["rows"][0]["object"]
        out = crd.kubectl("get", "-n", namespace, "qj", "columns").stdout.splitlines()
        shown = _table(crd, namespace, "columns")["rows"][0]["object"]
        version = shown["metadata"]["resourceVersion"]
        if before["metadata"]["resourceVersion"] == version:
            break
    else:
        raise AssertionError("the QueueJob kept changing around kubectl get")
    assert out[0].split() == ["NAME", "PHASE", "DONE", "FAILED", "PARALLELISM", "AGE"]
    assert out[1].split()[0] == "columns" and out[1].split()[4] == "3"
    shown_status = shown.get("status", {})
    failed = shown_status.get("counts", {}).get("failed")
    expected = [shown_status.get("phase"), shown_status.get("progress"), str(failed)]
    if all(expected[:2]) and failed is not None:  # an empty cell would shift kubectl's columns
        assert out[1].split()[1:4] == expected
    wide = crd.kubectl("get", "-n", namespace, "qj", "columns", "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-2:] == ["JOB", "AGE"]

    # The cells must be the object's fields. Compared on one atomic Table response, so an operator
    # running in this session and rewriting the status cannot make this flaky.
    table = _table(crd, namespace, "columns")
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == [
        "Name", "Phase", "Done", "Failed", "Parallelism", "Desired", "Active", "Job", "Age"
    ]  # fmt: skip
    row = table["rows"][0]
    cells = dict(zip(names, row["cells"], strict=True))
    rendered = row["object"]
    st = rendered.get("status", {})
    assert cells["Name"] == "columns"
    assert cells["Parallelism"] == rendered["spec"]["parallelism"] == 3
    assert cells["Phase"] == st.get("phase", "")
    assert cells["Done"] == st.get("progress", "")
    assert cells["Failed"] == st.get("counts", {}).get("failed")
    assert cells["Active"] == st.get("activeWorkers")
    assert cells["Desired"] == st.get("workers", {}).get("desired")


def test_kubectl_scale_sets_parallelism(crd: Any, namespace: str) -> None:
    obj = queuejob(name="scaled", items=["a"], parallelism=1, suspend=True)
    crd.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj))

    crd.kubectl("scale", "-n", namespace, "qj/scaled", "--replicas=4")
    got = crd.kubectl_json("get", "-n", namespace, "qj", "scaled")
    assert got["spec"]["parallelism"] == 4
    assert got["spec"]["items"] == ["a"]

    scale_path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/queuejobs/scaled/scale"
    scale = json.loads(crd.kubectl("get", "--raw", scale_path).stdout)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 4

    # The scale subresource applies the same bounds as the spec.
    result = crd.kubectl("scale", "-n", namespace, "qj/scaled", "--replicas=101", check=False)
    assert result.returncode != 0
    assert "spec.parallelism" in result.stderr and "less than or equal to 100" in result.stderr
    assert crd.kubectl_json("get", "-n", namespace, "qj", "scaled")["spec"]["parallelism"] == 4


def test_scale_status_replicas_is_active_workers(crd: Any, namespace: str) -> None:
    obj = queuejob(name="replicas", items=["a"], suspend=True)
    crd.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj))
    crd.kubectl(
        "patch", "-n", namespace, "qj", "replicas", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"activeWorkers": 2}}),
    )  # fmt: skip
    scale_path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/queuejobs/replicas/scale"
    # Scale and object share a resourceVersion: compare only matching snapshots, so a concurrently
    # running operator that rewrites activeWorkers cannot make this flaky.
    for _ in range(20):
        scale = json.loads(crd.kubectl("get", "--raw", scale_path).stdout)
        got = crd.kubectl_json("get", "-n", namespace, "qj", "replicas")
        if scale["metadata"]["resourceVersion"] == got["metadata"]["resourceVersion"]:
            assert scale["status"]["replicas"] == got["status"].get("activeWorkers", 0)
            return
    pytest.fail("the QueueJob kept changing; could not compare scale and object snapshots")
