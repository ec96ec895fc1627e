"""The Kubernetes calls of ``kubectl queuejob``, with kubectl's connection flags.

:class:`Kube` loads the kubeconfig as kubectl does (``--kubeconfig``, else ``$KUBECONFIG``, else
``~/.kube/config``; ``--context``; the context's namespace unless ``-n``), and impersonates with
``--as``/``--as-group`` like kubectl (one group). Every API error becomes a
:class:`PluginError` with a message for people (not found, forbidden, unreachable server).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from queuejob import naming, operate

T = TypeVar("T")

#: ConfigMap key and size limit of the items of an ``add`` request.
MAX_CONFIGMAP_BYTES = 1_000_000


class PluginError(Exception):
    """A failure to report as ``error: <message>`` with exit code 1."""


def _kubeconfig_path(flag: str | None) -> str | None:
    if flag:
        return flag
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(os.pathsep)[0]
    default = Path.home() / ".kube" / "config"
    return str(default) if default.exists() else None


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


class Kube:
    """An API client for one kubeconfig context, namespace and (optional) impersonation."""

    def __init__(
        self,
        *,
        kubeconfig: str | None,
        context: str | None,
        namespace: str | None,
        as_user: str | None = None,
        as_group: str | None = None,
    ) -> None:
        path = _kubeconfig_path(kubeconfig)
        if path is None:
            raise PluginError(
                "no kubeconfig: pass --kubeconfig or set KUBECONFIG (local control plane: "
                "run `make cluster-up` and use the kubeconfig it prints)"
            )
        if not Path(path).exists():
            raise PluginError(f"kubeconfig {path} does not exist (is the cluster up?)")
        try:
            contexts, current = kubernetes.config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
            chosen = current
            if context:
                chosen = next((c for c in contexts if c["name"] == context), None)
                if chosen is None:
                    raise PluginError(f"context {context!r} not found in {path}")
            config = kubernetes.client.Configuration()
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=config
            )
        except ConfigException as exc:
            raise PluginError(f"cannot use kubeconfig {path}: {exc}") from None
        config.retries = 1
        self.client = kubernetes.client.ApiClient(config)
        self.namespace = (
            namespace or (chosen or {}).get("context", {}).get("namespace") or "default"
        )
        self.headers: dict[str, Any] = {}
        if as_user:
            self.headers["Impersonate-User"] = as_user
        if as_group:
            self.headers["Impersonate-Group"] = as_group
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.server = config.host

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    # -- error translation ------------------------------------------------------------------

    def _call(
        self,
        what: str,
        call: Callable[[], T],
        not_found: str | None = None,
        passthrough: tuple[int, ...] = (),
    ) -> T:
        try:
            return call()
        except ApiException as exc:
            if exc.status in passthrough:
                raise
            if exc.status == 403:
                raise PluginError(f"forbidden: {_message(exc)}") from None
            if exc.status == 401:
                raise PluginError(f"unauthorized ({what}): check your credentials") from None
            if exc.status == 404:
                raise PluginError(not_found or f"{what}: not found") from None
            raise PluginError(f"{what}: {exc.status} {_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PluginError(
                f"cannot reach the API server {self.server} ({what}): {exc} "
                "(is the cluster up? local control plane: `make cluster-up`)"
            ) from None

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data)

    # -- reads ------------------------------------------------------------------------------

    def queuejob(self, name: str) -> dict[str, Any]:
        """The QueueJob ``name`` in this namespace (plain dict)."""
        return dict(
            self._call(
                f"get queuejob {name}",
                lambda: self._json(
                    self.custom.get_namespaced_custom_object(
                        naming.GROUP,
                        naming.VERSION,
                        self.namespace,
                        naming.PLURAL,
                        name,
                        _preload_content=False,
                        _headers=self.headers,
                    )
                ),
                not_found=f'queuejob "{name}" not found in namespace "{self.namespace}"',
            )
        )

    def events(self, qj: Mapping[str, Any], limit: int = 10) -> list[dict[str, Any]]:
        """The latest ``limit`` Events about the QueueJob, oldest first."""
        meta = qj["metadata"]
        selector = f"involvedObject.name={meta['name']},involvedObject.kind={naming.KIND}"
        raw = self._call(
            "list events",
            lambda: self._json(
                self.core.list_namespaced_event(
                    self.namespace,
                    field_selector=selector,
                    _preload_content=False,
                    _headers=self.headers,
                )
            ),
        )
        items = [e for e in raw.get("items", []) if e["involvedObject"].get("uid") == meta["uid"]]
        items.sort(key=event_time)
        return items[-limit:]

    def worker_pods(self, name: str) -> list[dict[str, Any]]:
        """The worker pods of QueueJob ``name``, by name."""
        value = name[:63].rstrip("-.")
        raw = self._call(
            "list pods",
            lambda: self._json(
                self.core.list_namespaced_pod(
                    self.namespace,
                    label_selector=f"{naming.QUEUEJOB_LABEL}={value}",
                    _preload_content=False,
                    _headers=self.headers,
                )
            ),
        )
        return sorted(raw.get("items", []), key=lambda p: p["metadata"]["name"])

    def pod_log(self, pod: str, tail: int | None) -> str:
        """The worker container's log of ``pod``."""
        kwargs: dict[str, Any] = {"container": "worker"}
        if tail is not None:
            kwargs["tail_lines"] = tail
        response: Any = self._call(
            f"logs of pod {pod}",
            lambda: self.core.read_namespaced_pod_log(
                pod, self.namespace, _preload_content=False, _headers=self.headers, **kwargs
            ),
        )
        return str(response.data.decode("utf-8", errors="replace"))

    # -- requests ---------------------------------------------------------------------------

    def create_items_configmap(self, qj: Mapping[str, Any], request_id: str, text: str) -> str:
        """A ConfigMap holding ``text`` (items, one per line) for an ``add`` request, owned by
        the QueueJob (garbage-collected with it); returns its name."""
        size = len(text.encode())
        if size > MAX_CONFIGMAP_BYTES:
            raise PluginError(
                f"the items take {size} bytes, more than one request holds "
                f"({MAX_CONFIGMAP_BYTES}): split them into several adds"
            )
        meta = qj["metadata"]
        name = f"{meta['name']}-add-{request_id[:8]}"
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {naming.QUEUEJOB_LABEL: meta["name"][:63].rstrip("-.")},
                "ownerReferences": [
                    {
                        "apiVersion": f"{naming.GROUP}/{naming.VERSION}",
                        "kind": naming.KIND,
                        "name": meta["name"],
                        "uid": meta["uid"],
                    }
                ],
            },
            "data": {operate.ADD_ITEMS_KEY: text},
        }
        self._call(
            f"create configmap {name}",
            lambda: self.core.create_namespaced_config_map(
                self.namespace,
                body,  # type: ignore[arg-type]
                _preload_content=False,
                _headers=self.headers,
            ),
        )
        return name

    def submit(self, name: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Patch the request annotation onto QueueJob ``name`` once no earlier request is
        pending (optimistic concurrency: the patch carries the resourceVersion it was based on,
        so two users never overwrite each other's request). Returns the patched QueueJob."""
        deadline = time.monotonic() + timeout
        while True:
            qj = self.queuejob(name)
            pending = operate.pending_request(qj["metadata"], qj.get("status") or {})
            if pending is not None:
                if time.monotonic() > deadline:
                    raise PluginError(
                        f"request {operate.request_id(pending)} on queuejob {name} is still "
                        f"waiting for the operator after {timeout:.0f}s (is the operator running?)"
                    )
                time.sleep(0.5)
                continue
            patch = {
                "metadata": {
                    "resourceVersion": qj["metadata"]["resourceVersion"],
                    "annotations": {operate.REQUEST_ANNOTATION: json.dumps(request)},
                }
            }
            try:
                return dict(
                    self._call(
                        f"patch queuejob {name}",
                        lambda body=patch: self._json(  # type: ignore[misc]
                            self.custom.patch_namespaced_custom_object(
                                naming.GROUP,
                                naming.VERSION,
                                self.namespace,
                                naming.PLURAL,
                                name,
                                body,
                                _content_type="application/merge-patch+json",
                                _preload_content=False,
                                _headers=self.headers,
                            )
                        ),
                        passthrough=(409,) if time.monotonic() < deadline else (),
                    )
                )
            except ApiException:
                continue  # 409: changed since read; read again

    def wait_result(self, name: str, request_id: str, timeout: float) -> dict[str, Any]:
        """``status.lastRequest`` once the operator has carried out ``request_id``."""
        deadline = time.monotonic() + timeout
        while True:
            last = (self.queuejob(name).get("status") or {}).get("lastRequest") or {}
            if last.get("id") == request_id:
                return dict(last)
            if time.monotonic() > deadline:
                raise PluginError(
                    f"request {request_id} was submitted, but the operator has not carried it "
                    f"out within {timeout:.0f}s (is the operator running? see the operator's "
                    "log; the request stays pending and runs when it is back)"
                )
            time.sleep(0.5)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
