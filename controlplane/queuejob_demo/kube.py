"""Kubernetes helpers for the demo and the operator benchmark: CRD, manifests, QueueJob reads.

Guarantees:

- :func:`apply_crd` is idempotent (create, or replace the existing definition) and returns only
  once the CRD is Established and its resource is served, so the next create cannot hit a 404;
- :func:`apply_manifest` creates every document of a multi-document YAML file in one namespace,
  whatever its kind (through the dynamic client), and returns the created objects;
- every wait has a deadline and raises :class:`TimeoutError` saying what it waited for.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from queuejob import naming

#: The checkout this module lives in (the demo runs from an editable install).
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_FILE = PROJECT_ROOT / "crds" / "queuejobs.workqueue.example.com.yaml"
EXAMPLES_DIR = PROJECT_ROOT / "manifests" / "examples"
CRD_NAME = f"{naming.PLURAL}.{naming.GROUP}"


def api_client(kubeconfig: pathlib.Path) -> client.ApiClient:
    """An API client for ``kubeconfig`` (its current context)."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    return client.ApiClient(configuration)


def check_reachable(kubeconfig: pathlib.Path) -> None:
    """Raise RuntimeError, saying what to do, unless a cluster answers at ``kubeconfig``."""
    hint = (
        "start the local control plane with `make cluster-up` (it writes "
        ".build/cluster/kubeconfig), or leave out --kubeconfig and the demo starts its own"
    )
    if not kubeconfig.is_file():
        raise RuntimeError(f"{kubeconfig} does not exist: {hint}")
    try:
        api = api_client(kubeconfig)
    except (config.ConfigException, yaml.YAMLError) as exc:
        raise RuntimeError(f"{kubeconfig} is not a usable kubeconfig ({exc}): {hint}") from None
    try:
        client.VersionApi(api).get_code(_request_timeout=5)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RuntimeError(f"no cluster answers at {kubeconfig} ({reason}): {hint}") from None
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _wait(what: str, timeout: float, probe: Callable[[], bool], interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def apply_crd(api: client.ApiClient, path: pathlib.Path = CRD_FILE, timeout: float = 60) -> None:
    """Create or replace the QueueJob CRD and wait until it is Established and served."""
    if not path.is_file():
        raise FileNotFoundError(f"CRD manifest not found: {path} (run from the repository)")
    body = yaml.safe_load(path.read_text())
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(body["metadata"]["name"])
        assert current.metadata is not None
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(body["metadata"]["name"], body)

    def established() -> bool:
        crd = ext.read_custom_resource_definition(body["metadata"]["name"])
        conditions = (crd.status.conditions or []) if crd.status else []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    _wait(f"CRD {CRD_NAME} to be Established", timeout, established)
    objects = client.CustomObjectsApi(api)

    def served() -> bool:
        try:
            objects.list_cluster_custom_object(naming.GROUP, naming.VERSION, naming.PLURAL, limit=1)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    _wait(f"{naming.PLURAL} to be served", timeout, served)


def ensure_namespace(api: client.ApiClient, namespace: str) -> bool:
    """Create ``namespace`` unless it exists; True when this call created it."""
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def load_manifest(path: pathlib.Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path``."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def apply_manifest(
    api: client.ApiClient, path: pathlib.Path, namespace: str
) -> list[dict[str, Any]]:
    """Create each document of ``path`` in ``namespace``; returns the created objects."""
    dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
    created = []
    for doc in load_manifest(path):
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        obj = resource.create(body=doc, namespace=namespace)
        created.append(obj.to_dict())
    return created


def get_queuejob(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The QueueJob ``namespace/name`` as a dict."""
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        naming.GROUP, naming.VERSION, namespace, naming.PLURAL, name
    )
    assert isinstance(obj, dict)
    return obj


def patch_queuejob(api: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    """Merge-patch the QueueJob ``namespace/name``."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        naming.GROUP,
        naming.VERSION,
        namespace,
        naming.PLURAL,
        name,
        patch,
        _content_type="application/merge-patch+json",
    )


def job_pods(api: client.ApiClient, namespace: str, queuejob: str) -> list[client.V1Pod]:
    """The worker pods of a QueueJob (selected by the operator's label), oldest first."""
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"{naming.QUEUEJOB_LABEL}={queuejob}"
    )
    items: list[client.V1Pod] = pods.items
    return sorted(items, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))  # type: ignore[union-attr]


def delete_manifest(
    api: client.ApiClient, path: pathlib.Path, namespace: str, timeout: float = 60
) -> None:
    """Delete the objects of ``path`` from ``namespace`` (absent ones are fine) and wait."""
    dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
    docs = load_manifest(path)
    resources = [
        (dynamic.resources.get(api_version=d["apiVersion"], kind=d["kind"]), d["metadata"]["name"])
        for d in docs
    ]
    for resource, name in resources:
        try:
            resource.delete(name=name, namespace=namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def gone() -> bool:
        for resource, name in resources:
            try:
                resource.get(name=name, namespace=namespace)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            return False
        return True

    _wait(f"the objects of {path.name} to be deleted", timeout, gone, interval=0.5)


def wait_pods_finished(
    api: client.ApiClient, namespace: str, queuejob: str, timeout: float = 30
) -> list[client.V1Pod]:
    """The QueueJob's pods once none is Pending or Running (or whatever they are at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        pods = job_pods(api, namespace, queuejob)
        busy = [p for p in pods if p.status is None or p.status.phase in ("Pending", "Running")]
        if not busy or time.monotonic() > deadline:
            return pods
        time.sleep(0.5)


def events_of(api: client.ApiClient, namespace: str, uid: str) -> list[str]:
    """The Events about one QueueJob (by uid), oldest first, as ``type reason: message``."""
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.uid={uid}"
    )
    ordered = sorted(
        events.items, key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.name)
    )
    return [f"{e.type:<7} {e.reason}: {e.message}" for e in ordered]
