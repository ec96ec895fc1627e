"""The few Kubernetes API calls the operator makes, as async functions.

They use the official ``kubernetes`` client's ``ApiClient`` (credentials, connection pool) in
worker threads (``asyncio.to_thread``), with requests built here (:func:`request`). Every
call is idempotent from the caller's view: "ensure" functions create or adopt what exists, and a
patch or read of something absent returns ``None`` instead of raising. API calls made (for RBAC):

- batch/jobs: create, get, patch, and list/watch (kopf's watch of the worker Jobs)
- core/secrets: create, get, patch (get also for ``spec.redis.passwordSecretRef``)
- core/configmaps: get (``spec.itemsFrom``)
- coordination.k8s.io/leases: get, create, update (the leader election: ``queuejob.leaselock``)
- workqueue.example.com/queuejobs/status: patch (the progress of a long seed, mid-handler;
  the status of an event-driven refresh)
- core/nodes: list; core/pods: list, delete; core/pods/status: patch (worker pods on a lost
  node: ``queuejob.nodeloss``)
- plus what kopf does itself: queuejobs list/watch/patch, queuejobs/status patch,
  events create, and (owner references with blockOwnerDeletion) queuejobs/finalizers update.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import threading
from typing import Any, Literal, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from queuejob import naming

_lock = threading.Lock()
_api: kubernetes.client.ApiClient | None = None

#: Strategic merge patch, as the generated client sends a dict patch of a built-in object.
MERGE_PATCH = "application/strategic-merge-patch+json"


def api_client(pool_size: int = 8) -> kubernetes.client.ApiClient:
    """A shared API client: in-cluster config in a pod, else the kubeconfig (``KUBECONFIG``).

    Only the ``ApiClient`` (configuration, credentials, connection pool): the calls below build
    their requests themselves (:func:`request`) instead of going through the generated
    ``BatchV1Api`` and ``CoreV1Api``. Those classes cost 23 MiB of resident memory once built
    (their modules, a pydantic wrapper per API method and the models they pull in), a quarter
    of the idle operator's memory, for the six calls the operator makes (see docs/benchmarks.md).
    """
    global _api
    with _lock:
        if _api is None:
            _api = new_api_client(pool_size)
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


def request(
    method: Literal["GET", "POST", "PATCH", "DELETE"],
    path: str,
    body: dict[str, Any] | None = None,
    *,
    content_type: str = "application/json",
    query: dict[str, str] | None = None,
    **path_params: str,
) -> dict[str, Any]:
    """One API request in the calling thread; the response's JSON object.

    ``path`` is relative to the server, with ``{name}`` placeholders filled from
    ``path_params`` (URL-quoted), ``query`` as the query string. The body is sent as JSON as
    it is (no client models: building a ``V1Job`` and turning it back into a dict took most of
    the operator's CPU per QueueJob).
    The response is read to its end, which hands the connection back to the pool: an unread
    response keeps its connection out of the pool for good, and the next call opens a new TLS
    connection (one handshake per call; a fifth of the operator's CPU at 1,000 QueueJobs).
    Raises ``ApiException`` (with ``status``) for any answer outside 2xx, like the generated
    API classes.
    """
    api = api_client()
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    verb, url, sent_headers, _, _ = api.param_serialize(
        method=method,
        resource_path=path,
        path_params=path_params,
        query_params=list((query or {}).items()),
        header_params=headers,
        auth_settings=["BearerToken"],
    )
    response: Any = api.call_api(verb, url, header_params=sent_headers, body=body)
    data = response.read()  # to the end: the connection goes back to the pool
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return cast(dict[str, Any], json.loads(data))


def is_transient(exc: BaseException) -> bool:
    """True for API errors worth retrying later: throttling, server errors, timeouts."""
    if isinstance(exc, ApiException):
        return exc.status in (0, 408, 429) or (exc.status or 0) >= 500
    return isinstance(exc, OSError | TimeoutError)


JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
JOB = JOBS + "/{name}"
SECRETS = "/api/v1/namespaces/{namespace}/secrets"
SECRET = SECRETS + "/{name}"
CONFIGMAP = "/api/v1/namespaces/{namespace}/configmaps/{name}"
QUEUEJOBS = f"/apis/{naming.GROUP}/{naming.VERSION}/namespaces/{{namespace}}/{naming.PLURAL}"
QUEUEJOB = QUEUEJOBS + "/{name}"
QUEUEJOB_STATUS = QUEUEJOB + "/status"
EVENTS = "/api/v1/namespaces/{namespace}/events"
NODES = "/api/v1/nodes"
ALL_PODS = "/api/v1/pods"
POD = "/api/v1/namespaces/{namespace}/pods/{name}"
POD_STATUS = POD + "/status"


async def ensure_job(body: dict[str, Any]) -> dict[str, Any]:
    """Create the Job ``body`` or return the existing one of the same name (never replaces it)."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def call() -> dict[str, Any]:
        try:
            return request("POST", JOBS, body, namespace=ns)
        except ApiException as exc:
            if exc.status != 409:
                raise
        return request("GET", JOB, namespace=ns, name=name)

    return await asyncio.to_thread(call)


def _get_or_none(path: str, namespace: str, name: str) -> dict[str, Any] | None:
    """GET the object at ``path`` (blocking): the object, or None if it does not exist."""
    try:
        return request("GET", path, namespace=namespace, name=name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


async def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    """The Job as a dict, or None if it does not exist."""
    return await asyncio.to_thread(_get_or_none, JOB, namespace, name)


async def patch_job(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
    """Merge-patch the Job; the patched Job as the API returns it, or None if it does not
    exist."""

    def call() -> dict[str, Any] | None:
        try:
            return request(
                "PATCH", JOB, patch, content_type=MERGE_PATCH, namespace=namespace, name=name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    return await asyncio.to_thread(call)


async def ensure_secret(body: dict[str, Any]) -> None:
    """Create the Secret ``body``, or patch its data if it exists already."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]

    def call() -> None:
        try:
            request("POST", SECRETS, body, namespace=ns)
        except ApiException as exc:
            if exc.status != 409:
                raise
            data = {"data": body["data"]}
            request("PATCH", SECRET, data, content_type=MERGE_PATCH, namespace=ns, name=name)

    await asyncio.to_thread(call)


async def patch_queuejob_status(namespace: str, name: str, status: dict[str, Any]) -> bool:
    """Merge-patch the QueueJob's ``status`` now (kopf patches only after a handler returns);
    False if the QueueJob does not exist."""
    patched = await patch_queuejob(namespace, name, {"status": status}, status=True)
    return patched is not None


async def patch_queuejob(
    namespace: str, name: str, patch: dict[str, Any], *, status: bool = False
) -> dict[str, Any] | None:
    """Merge-patch the QueueJob (its ``status`` subresource with ``status=True``); the object
    as the API returns it, or None if the QueueJob does not exist."""
    path = QUEUEJOB_STATUS if status else QUEUEJOB

    def call() -> dict[str, Any] | None:
        try:
            return request(
                "PATCH",
                path,
                patch,
                content_type="application/merge-patch+json",
                namespace=namespace,
                name=name,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    return await asyncio.to_thread(call)


class NotFoundError(LookupError):
    """A referenced ConfigMap, Secret or key does not exist; the message names it."""


def _read_key(kind: Literal["ConfigMap", "Secret"], namespace: str, name: str, key: str) -> str:
    """``data[key]`` of the ConfigMap or Secret (``kind``) ``name``, read in the calling thread.

    Raises :class:`NotFoundError` naming the object (``kind namespace/name``) or the key.
    """
    try:
        obj = request(
            "GET", CONFIGMAP if kind == "ConfigMap" else SECRET, namespace=namespace, name=name
        )
    except ApiException as exc:
        if exc.status == 404:
            raise NotFoundError(f"{kind} {namespace}/{name} not found") from None
        raise
    data = obj.get("data") or {}
    if key not in data:
        raise NotFoundError(f"{kind} {namespace}/{name} has no key {key!r}")
    return str(data[key])


async def read_configmap_key(namespace: str, name: str, key: str) -> str:
    """The text under ``key`` of ConfigMap ``name``; :class:`NotFoundError` if either is absent."""
    return await asyncio.to_thread(_read_key, "ConfigMap", namespace, name, key)


async def read_secret(namespace: str, name: str) -> dict[str, str] | None:
    """The decoded data of Secret ``name`` (undecodable values dropped), or None if absent."""
    obj = await asyncio.to_thread(_get_or_none, SECRET, namespace, name)
    if obj is None:
        return None
    data: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(str(value)).decode()
        except ValueError:
            continue
    return data


async def read_secret_key(namespace: str, name: str, key: str) -> str:
    """The decoded value under ``key`` of Secret ``name``; :class:`NotFoundError` if absent."""
    encoded = await asyncio.to_thread(_read_key, "Secret", namespace, name, key)
    return base64.b64decode(encoded).decode()


async def delete_job(namespace: str, name: str, uid: str) -> None:
    """Delete the Job ``name`` if it still has ``uid`` (background propagation: its pods go
    after it); a Job already gone or replaced (a new uid) is left alone."""
    options = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
        "preconditions": {"uid": uid},
    }

    def call() -> None:
        try:
            request("DELETE", JOB, options, namespace=namespace, name=name)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    await asyncio.to_thread(call)


async def list_nodes() -> list[dict[str, Any]]:
    """Every Node (served from the API server's watch cache: ``resourceVersion=0``)."""

    def call() -> list[dict[str, Any]]:
        items = request("GET", NODES, query={"resourceVersion": "0"}).get("items") or []
        return list(items)

    return await asyncio.to_thread(call)


async def list_pods_on_node(node: str, label_selector: str) -> list[dict[str, Any]]:
    """The pods of every namespace bound to ``node`` that match ``label_selector``."""

    def call() -> list[dict[str, Any]]:
        query = {"fieldSelector": f"spec.nodeName={node}", "labelSelector": label_selector}
        return list(request("GET", ALL_PODS, query=query).get("items") or [])

    return await asyncio.to_thread(call)


async def patch_pod_status(namespace: str, name: str, patch: dict[str, Any]) -> bool:
    """Strategic-merge-patch the pod's status; False if the pod is gone or changed meanwhile
    (404, or 409 when the patch carries a ``resourceVersion`` that is no longer current)."""

    def call() -> bool:
        try:
            request(
                "PATCH", POD_STATUS, patch, content_type=MERGE_PATCH, namespace=namespace, name=name
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    return await asyncio.to_thread(call)


async def force_delete_pod(namespace: str, name: str, uid: str) -> bool:
    """Delete the pod with grace period 0 if it still has ``uid``; False if it is gone or
    replaced."""
    options = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    }

    def call() -> bool:
        try:
            request("DELETE", POD, options, namespace=namespace, name=name)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    return await asyncio.to_thread(call)


async def post_event(
    involved: dict[str, Any], type_: Literal["Normal", "Warning"], reason: str, message: str
) -> None:
    """Create a core/v1 Event about ``involved`` (``apiVersion``, ``kind``, ``name``,
    ``namespace``, ``uid``), outside kopf's handler context (where ``kopf.event`` cannot post)."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": involved,
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "queuejob-operator"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    await asyncio.to_thread(request, "POST", EVENTS, body, namespace=involved["namespace"])
