"""The few Kubernetes API calls the operator makes, as async functions.

They use the official ``kubernetes`` client in worker threads (``asyncio.to_thread``). Every
call is idempotent from the caller's view: "ensure" functions create or adopt what exists, and a
patch or read of something absent returns ``None`` instead of raising. API calls made (for RBAC):

- batch/jobs: create, get, patch
- core/secrets: create, get, patch (get also for ``spec.redis.passwordSecretRef``)
- core/configmaps: get (``spec.itemsFrom``)
- coordination.k8s.io/leases: get, create, update (the leader election: ``queuejob.leaselock``)
- plus what kopf does itself: queuejobs list/watch/patch, queuejobs/status patch,
  events create, and (owner references with blockOwnerDeletion) queuejobs/finalizers update.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from typing import Any, Literal, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

_lock = threading.Lock()
_api: kubernetes.client.ApiClient | None = None
_apis: dict[str, Any] = {}


def api_client(pool_size: int = 8) -> kubernetes.client.ApiClient:
    """A shared API client: in-cluster config in a pod, else the kubeconfig (``KUBECONFIG``).

    The first call also builds the shared ``BatchV1Api`` and ``CoreV1Api``: the client imports
    their modules lazily, and building them costs seconds of CPU (one wrapper per API method),
    which the operator pays at startup (``handlers.startup``) rather than on the first
    QueueJobs (py-spy, see docs/scale.md).
    """
    global _api
    with _lock:
        if _api is None:
            _api = new_api_client(pool_size)
            _apis["batch"] = kubernetes.client.BatchV1Api(_api)
            _apis["core"] = kubernetes.client.CoreV1Api(_api)
        return _api


def new_api_client(pool_size: int = 8) -> kubernetes.client.ApiClient:
    """A separate API client (own connection pool), configured as :func:`api_client`'s.

    The leader election uses one so that its renewals never queue behind the handlers' calls.
    """
    config = kubernetes.client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_kube_config(client_configuration=config)  # type: ignore[no-untyped-call]
    config.connection_pool_maxsize = max(pool_size, 4)
    return kubernetes.client.ApiClient(config)


def _batch() -> kubernetes.client.BatchV1Api:
    api_client()
    return cast(kubernetes.client.BatchV1Api, _apis["batch"])


def _core() -> kubernetes.client.CoreV1Api:
    api_client()
    return cast(kubernetes.client.CoreV1Api, _apis["core"])


def _json(response: Any) -> dict[str, Any]:
    """The JSON body of a raw response (a call made with ``_preload_content=False``).

    Skips the client's model classes: building a ``V1Job`` and turning it back into a dict took
    most of the operator's CPU per QueueJob (py-spy, see docs/scale.md).
    """
    return cast(dict[str, Any], json.loads(response.data))


def is_transient(exc: BaseException) -> bool:
    """True for API errors worth retrying later: throttling, server errors, timeouts."""
    if isinstance(exc, ApiException):
        return exc.status in (0, 408, 429) or (exc.status or 0) >= 500
    return isinstance(exc, OSError | TimeoutError)


async def ensure_job(body: dict[str, Any]) -> dict[str, Any]:
    """Create the Job ``body`` or return the existing one of the same name (never replaces it)."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def call() -> dict[str, Any]:
        api = _batch()
        try:
            created = api.create_namespaced_job(ns, body, _preload_content=False)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise
            created = api.read_namespaced_job(name, ns, _preload_content=False)
        return _json(created)

    return await asyncio.to_thread(call)


async def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    """The Job as a dict, or None if it does not exist."""

    def call() -> dict[str, Any] | None:
        try:
            job = _batch().read_namespaced_job(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(job)

    return await asyncio.to_thread(call)


async def patch_job(namespace: str, name: str, patch: dict[str, Any]) -> bool:
    """Merge-patch the Job; False if it does not exist."""

    def call() -> bool:
        try:
            _batch().patch_namespaced_job(name, namespace, patch, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    return await asyncio.to_thread(call)


async def ensure_secret(body: dict[str, Any]) -> None:
    """Create the Secret ``body``, or patch its data if it exists already."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def call() -> None:
        api = _core()
        try:
            api.create_namespaced_secret(ns, body, _preload_content=False)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise
            api.patch_namespaced_secret(name, ns, {"data": body["data"]}, _preload_content=False)

    await asyncio.to_thread(call)


class NotFoundError(LookupError):
    """A referenced ConfigMap, Secret or key does not exist; the message names it."""


def _read_key(kind: Literal["ConfigMap", "Secret"], namespace: str, name: str, key: str) -> str:
    """``data[key]`` of the ConfigMap or Secret (``kind``) ``name``, read in the calling thread.

    Raises :class:`NotFoundError` naming the object (``kind namespace/name``) or the key.
    """
    core = _core()
    read = core.read_namespaced_config_map if kind == "ConfigMap" else core.read_namespaced_secret
    try:
        obj = read(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise NotFoundError(f"{kind} {namespace}/{name} not found") from None
        raise
    data = obj.data or {}
    if key not in data:
        raise NotFoundError(f"{kind} {namespace}/{name} has no key {key!r}")
    return str(data[key])


async def read_configmap_key(namespace: str, name: str, key: str) -> str:
    """The text under ``key`` of ConfigMap ``name``; :class:`NotFoundError` if either is absent."""
    return await asyncio.to_thread(_read_key, "ConfigMap", namespace, name, key)


async def read_secret_key(namespace: str, name: str, key: str) -> str:
    """The decoded value under ``key`` of Secret ``name``; :class:`NotFoundError` if absent."""
    encoded = await asyncio.to_thread(_read_key, "Secret", namespace, name, key)
    return base64.b64decode(encoded).decode()
