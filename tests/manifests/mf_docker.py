"""Running this project's images under Docker as the manifests run them (the image smoke tests).

- :func:`images` (behind the session fixture ``images`` in conftest.py; it lives in
  ``fixtures.images``, which the real-node fixtures use too) starts or installs a Docker engine
  and builds both images, or skips with the reason where no engine can be started.
- :func:`security_flags` turns a container's and its pod's ``securityContext`` into the
  ``docker run`` flags that enforce the same: the user, a read-only root filesystem, no
  capabilities, no privilege escalation (Docker's default seccomp profile is RuntimeDefault's).
  Fields it cannot express fail the test instead of being dropped silently.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from fixtures.images import QUEUEJOB_IMAGE, REDIS_IMAGE, Images, images

__all__ = [
    "QUEUEJOB_IMAGE", "REDIS_IMAGE", "Images", "docker", "images", "inspect", "security_flags",
    "volume_flags",
]  # fmt: skip


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``docker ARGS``; with ``check`` a failure fails the test with Docker's output."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"docker {' '.join(args)} (exit {result.returncode}):\n{result.stderr}{result.stdout}"
        )
    return result


def inspect(ref: str) -> dict[str, Any]:
    """``docker inspect`` of one container or image."""
    return dict(json.loads(docker("inspect", ref).stdout)[0])


_HANDLED_CONTAINER = {
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "capabilities",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "seccompProfile",
}
_HANDLED_POD = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}


def security_flags(pod_spec: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """``docker run`` flags for the pod's and the container's ``securityContext``."""
    pod = pod_spec.get("securityContext", {})
    ctr = container.get("securityContext", {})
    assert set(pod) <= _HANDLED_POD, (
        f"pod securityContext fields not mapped: {set(pod) - _HANDLED_POD}"
    )
    assert set(ctr) <= _HANDLED_CONTAINER, (
        f"container securityContext fields not mapped: {set(ctr) - _HANDLED_CONTAINER}"
    )
    merged = {**pod, **ctr}
    for key in ("seccompProfile",):
        profile = merged.get(key, {}).get("type", "RuntimeDefault")
        assert profile == "RuntimeDefault", (
            f"{key} {profile}: only RuntimeDefault maps to Docker's default"
        )
    flags: list[str] = []
    user = merged.get("runAsUser")
    if user is not None:
        flags += ["--user", f"{user}:{merged.get('runAsGroup', user)}"]
    if "fsGroup" in pod:
        flags += ["--group-add", str(pod["fsGroup"])]
    if merged.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if merged.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    for cap in merged.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", cap]
    for cap in merged.get("capabilities", {}).get("add", []):
        flags += ["--cap-add", cap]
    return flags


def volume_flags(
    pod_spec: dict[str, Any], container: dict[str, Any], *, claims: bool = False
) -> list[str]:
    """A tmpfs for every emptyDir the container mounts (size from ``sizeLimit``), writable by
    the pod's fsGroup like the kubelet makes it; with ``claims`` also for PersistentVolumeClaims
    (a fresh, empty volume, as a newly bound claim is)."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    group = pod_spec.get("securityContext", {}).get("fsGroup")
    flags = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        kinds = ("emptyDir", "persistentVolumeClaim") if claims else ("emptyDir",)
        assert any(k in volume for k in kinds), f"volume {mount['name']}: not mapped to a tmpfs"
        options = ["rw", "mode=1777" if group is None else "mode=2775"]
        if group is not None:
            options.append(f"gid={group}")
        limit = volume.get("emptyDir", {}).get("sizeLimit")
        if limit:
            assert limit.endswith("Mi"), f"sizeLimit {limit}: only Mi is mapped"
            options.append(f"size={limit[:-2]}m")
        flags += ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]
    return flags
