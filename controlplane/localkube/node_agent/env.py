"""A container's environment and argv, resolved like the kubelet does (the subset we support)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from localkube.node_agent.api import Api, ApiError

INHERITED = ("PATH", "HOME", "LANG")
NODE_IP = "127.0.0.1"
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class EnvError(Exception):
    """The environment cannot be built (yet): the message names the variable and the reason."""


def _field_path(pod: dict[str, Any], path: str) -> str:
    meta = pod.get("metadata", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod.get("spec", {}).get("nodeName", ""),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", ""),
        "status.podIP": NODE_IP,
        "status.hostIP": NODE_IP,
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise EnvError(f"fieldRef.fieldPath {path!r} is not supported by the localkube node agent")


class EnvResolver:
    """Reads Secrets and ConfigMaps of one pod's namespace (cached for one resolution)."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._cache: dict[tuple[str, str], dict[str, str] | None] = {}

    def _data(self, kind: str, name: str) -> dict[str, str] | None:
        key = (kind, name)
        if key not in self._cache:
            try:
                obj = self.api.get(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise EnvError(f"cannot read {kind[:-1]} {name!r}: {exc}") from exc
                self._cache[key] = None
            else:
                data: dict[str, str] = dict(obj.get("data") or {})
                if kind == "secrets":
                    data = {
                        k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()
                    }
                elif obj.get("binaryData"):
                    data.update(
                        {
                            k: base64.b64decode(v).decode("utf-8", "replace")
                            for k, v in obj["binaryData"].items()
                        }
                    )
                self._cache[key] = data
        return self._cache[key]

    def key_ref(self, kind: str, ref: dict[str, Any], var: str) -> str | None:
        name, key = ref.get("name", ""), ref.get("key", "")
        data = self._data(kind, name)
        if data is None or key not in data:
            if ref.get("optional"):
                return None
            what = (
                f"{kind[:-1]} {name!r}" if data is None else f"key {key!r} in {kind[:-1]} {name!r}"
            )
            raise EnvError(f"env {var}: {what} not found")
        return data[key]

    def source(self, kind: str, ref: dict[str, Any]) -> dict[str, str]:
        data = self._data(kind, ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                return {}
            raise EnvError(f"envFrom: {kind[:-1]} {ref.get('name')!r} not found")
        return data


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables replaced, ``$$`` -> ``$``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(sub, value)


def container_env(api: Api, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Base variables, then envFrom, then env (later wins), as the kubelet orders them."""
    meta = pod["metadata"]
    env: dict[str, str] = {k: os.environ[k] for k in INHERITED if k in os.environ}
    marker = os.environ.get("LOCALKUBE_CLUSTER_ID")
    if marker:
        env["LOCALKUBE_CLUSTER_ID"] = marker  # lets the launcher find pod processes on `down`
    env["HOSTNAME"] = meta["name"]
    env["PYTHONUNBUFFERED"] = "1"
    resolver = EnvResolver(api, meta["namespace"])
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, field in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            if field in source:
                env.update({prefix + k: v for k, v in resolver.source(kind, source[field]).items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "secretKeyRef" in source:
            value = resolver.key_ref("secrets", source["secretKeyRef"], name)
        elif "configMapKeyRef" in source:
            value = resolver.key_ref("configmaps", source["configMapKeyRef"], name)
        elif "fieldRef" in source:
            value = _field_path(pod, source["fieldRef"].get("fieldPath", ""))
        else:
            raise EnvError(f"env {name}: {sorted(source)} is not supported by the node agent")
        if value is not None:
            env[name] = value
    return env


def container_argv(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """(command or ``["queuejob"]``) + args, expanded, the executable resolved to a path."""
    argv = [expand(a, env) for a in (container.get("command") or ["queuejob"])]
    argv += [expand(a, env) for a in container.get("args") or []]
    if "/" not in argv[0]:
        beside_python = Path(sys.executable).parent / argv[0]
        if os.access(beside_python, os.X_OK):
            argv[0] = str(beside_python)
        else:
            argv[0] = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
    return argv
