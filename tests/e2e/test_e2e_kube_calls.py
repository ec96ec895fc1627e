"""The operator's Kubernetes calls (``queuejob.kube``) against the real local API server.

Every call returns its connection to the client's pool: one thread making calls one after
another uses one TLS connection, whatever the call and its outcome (created, already there,
patched, not found). A raw response left unread kept its connection out of the pool, so every
``ensure_secret`` and ``patch_job`` opened a new one (a TLS handshake each; a fifth of the
operator's CPU at 1,000 QueueJobs).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.config import kube_config

from fixtures.cluster import Cluster
from queuejob import kube, naming
from queuejob.jobcache import JobCache

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def fresh_kube(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``queuejob.kube``'s shared client built anew for this cluster, dropped afterwards."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    # The client reads $KUBECONFIG once, at import.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(cluster.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kube, "_api", None)
    yield
    if kube._api is not None:
        kube._api.close()  # type: ignore[no-untyped-call]


def _connections_opened() -> int:
    """TLS connections the shared client's pools have opened so far."""
    assert kube._api is not None
    manager = kube._api.rest_client.pool_manager
    # RecentlyUsedContainer refuses plain iteration; keys() is its snapshot.
    keys = manager.pools.keys()
    return sum(manager.pools[key].num_connections for key in keys)


def _job(namespace: str) -> dict[str, Any]:
    """A suspended Job (no pod ever starts) that the calls below create, read and patch."""
    container = {"name": "w", "image": "queuejob:dev", "command": ["true"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "conn-reuse", "namespace": namespace},
        "spec": {
            "suspend": True,
            "parallelism": 1,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def _secret(namespace: str, value: str) -> dict[str, Any]:
    data = {"password": base64.b64encode(value.encode()).decode()}
    return {"metadata": {"name": "conn-reuse", "namespace": namespace}, "data": data}


@pytest.mark.usefixtures("fresh_kube")
def test_sequential_calls_reuse_one_connection(cluster: Cluster, namespace: str) -> None:
    async def calls() -> list[Any]:
        results: list[Any] = []
        for round_ in range(3):
            await kube.ensure_secret(_secret(namespace, f"pw-{round_}"))  # create, then patch
            job = await kube.ensure_job(_job(namespace))  # create, then 409 and read
            results.append(job["metadata"]["name"])
            patched = await kube.patch_job(namespace, "conn-reuse", {"spec": {"parallelism": 2}})
            results.append((patched or {}).get("spec", {}).get("parallelism"))
            results.append(
                (await kube.read_job(namespace, "conn-reuse") or {})
                .get("spec", {})
                .get("parallelism")
            )
            results.append(await kube.read_job(namespace, "absent"))  # 404 -> None
            results.append(await kube.patch_job(namespace, "absent", {"spec": {}}))  # 404 -> None
        return results

    results = asyncio.run(calls())
    assert results == ["conn-reuse", 2, 2, None, None] * 3
    # 21 requests made one at a time: one connection, opened once, reused by every call.
    assert _connections_opened() == 1
    secret = cluster.kubectl_json("get", "secret", "conn-reuse", "-n", namespace)
    assert base64.b64decode(secret["data"]["password"]).decode() == "pw-2"


@pytest.mark.usefixtures("fresh_kube")
def test_reading_keys_of_configmaps_and_secrets(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "work", "-n", namespace, "--from-literal=items=a\nb")
    cluster.kubectl("create", "secret", "generic", "auth", "-n", namespace, "--from-literal=pw=s3")

    async def reads() -> list[Any]:
        results: list[Any] = [
            await kube.read_configmap_key(namespace, "work", "items"),
            await kube.read_secret_key(namespace, "auth", "pw"),
        ]
        for call, name, key in (
            (kube.read_configmap_key, "absent", "items"),
            (kube.read_configmap_key, "work", "nokey"),
            (kube.read_secret_key, "absent", "pw"),
        ):
            try:
                await call(namespace, name, key)
            except kube.NotFoundError as exc:
                results.append(str(exc))
        return results

    assert asyncio.run(reads()) == [
        "a\nb",
        "s3",
        f"ConfigMap {namespace}/absent not found",
        f"ConfigMap {namespace}/work has no key 'nokey'",
        f"Secret {namespace}/absent not found",
    ]
    assert _connections_opened() == 1


@pytest.mark.usefixtures("fresh_kube")
def test_delete_job_only_with_its_uid(cluster: Cluster, namespace: str) -> None:
    async def calls() -> list[Any]:
        job = await kube.ensure_job(_job(namespace))
        await kube.delete_job(namespace, "conn-reuse", "00000000-0000-0000-0000-000000000000")
        kept = await kube.read_job(namespace, "conn-reuse")  # another uid: left alone
        await kube.delete_job(namespace, "conn-reuse", job["metadata"]["uid"])
        await kube.delete_job(namespace, "conn-reuse", job["metadata"]["uid"])  # gone: no error
        return [kept is not None and kept["metadata"]["uid"] == job["metadata"]["uid"]]

    assert asyncio.run(calls()) == [True]

    def gone() -> bool:
        listed = cluster.kubectl("get", "job", "conn-reuse", "-n", namespace, check=False)
        return listed.returncode != 0 and "NotFound" in listed.stderr

    deadline = time.monotonic() + 60
    while not gone():
        assert time.monotonic() < deadline, "the Job was not deleted"
        time.sleep(0.5)
    assert _connections_opened() == 1


@pytest.mark.usefixtures("fresh_kube")
def test_job_cache_reads_through_to_the_api_and_keeps_what_it_got(
    cluster: Cluster, namespace: str
) -> None:
    """A miss GETs the Job and keeps it; a fresh read GETs again; a Job found gone is dropped."""
    labelled = _job(namespace)
    labelled["metadata"]["labels"] = {naming.QUEUEJOB_LABEL: "conn-reuse"}

    async def calls() -> list[Any]:
        cache = JobCache()
        results: list[Any] = [await cache.read(namespace, "conn-reuse")]  # absent: None
        job = await kube.ensure_job(labelled)
        uid = job["metadata"]["uid"]
        read = await cache.read(namespace, "conn-reuse")  # a miss: GET, kept
        results.append(read is not None and read["metadata"]["uid"] == uid)
        results.append((cache.hits, cache.misses))
        patched = await kube.patch_job(namespace, "conn-reuse", {"spec": {"parallelism": 3}})
        cache.keep(patched)  # what the operator does with its own writes
        hit = cache.get(namespace, "conn-reuse")
        results.append((hit or {}).get("spec", {}).get("parallelism"))
        results.append(cache.get(namespace, "conn-reuse", owner="another-queuejob"))
        await kube.delete_job(namespace, "conn-reuse", uid)
        while (await cache.read(namespace, "conn-reuse", fresh=True)) is not None:
            await asyncio.sleep(0.2)  # the Job controller removes its finalizer first
        results.append(cache.get(namespace, "conn-reuse"))  # dropped by the GET's 404
        return results

    assert asyncio.run(calls()) == [None, True, (0, 2), 3, None, None]
