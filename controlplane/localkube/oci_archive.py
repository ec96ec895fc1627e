"""Write a single-layer container image as an OCI image-layout tar, for ``ctr images import``.

Used for the real node's pause image (one static binary) and small test images. Guarantees:

- the output is deterministic: same files and name => byte-identical archive (mtime 0, uid/gid 0,
  sorted entries, no compression), so an unchanged image imports to the same digest;
- every parent directory of a file or symlink gets its own entry (mode 0755);
- the index names the image with ``io.containerd.image.name`` (the full reference, which
  ``ctr images import`` uses as the image name) and ``org.opencontainers.image.ref.name``;
- the image is linux/<this machine's architecture>; its config carries ``Entrypoint``/``Cmd``,
  ``Env`` and an optional numeric ``User``.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def go_arch() -> str:
    """This machine's architecture in OCI/Go spelling (amd64, arm64, ...)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


@dataclass(frozen=True)
class File:
    """A regular file of the image: its content and mode."""

    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Symlink:
    """A symbolic link of the image."""

    target: str


@dataclass(frozen=True)
class ImageSpec:
    """What goes into the image. Paths are absolute inside the image."""

    name: str  # full reference, e.g. "localhost/localkube/pause:1"
    files: Mapping[str, File | Symlink]
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = (DEFAULT_PATH,)
    user: str = ""
    directories: Sequence[str] = field(default=())  # extra empty directories, e.g. "/tmp"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_tar(spec: ImageSpec) -> bytes:
    """The image's only layer: an uncompressed tar of its files, symlinks and directories."""
    entries: dict[str, File | Symlink | None] = {}  # None: a directory
    for raw in [*spec.files, *spec.directories]:
        path = PurePosixPath(raw)
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(f"image path must be absolute and normalized: {raw!r}")
        for parent in reversed(path.parents[:-1]):  # all but "/"
            entries.setdefault(str(parent).lstrip("/"), None)
    for raw in spec.directories:
        entries.setdefault(raw.lstrip("/"), None)
    for raw, item in spec.files.items():
        entries[raw.lstrip("/")] = item
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            entry = entries[name]
            if entry is None:
                tar.addfile(_tar_info(name + "/", tarfile.DIRTYPE, 0o755))
            elif isinstance(entry, Symlink):
                info = _tar_info(name, tarfile.SYMTYPE, 0o777)
                info.linkname = entry.target
                tar.addfile(info)
            else:
                info = _tar_info(name, tarfile.REGTYPE, entry.mode)
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_oci_archive(spec: ImageSpec, path: Path) -> str:
    """Write ``spec`` as an OCI image-layout tar at ``path``; return the manifest digest."""
    layer = layer_tar(spec)
    arch = go_arch()
    config: dict[str, Any] = {"Env": list(spec.env), "WorkingDir": "/"}
    if spec.entrypoint:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd:
        config["Cmd"] = list(spec.cmd)
    if spec.user:
        config["User"] = spec.user
    config_blob = _json(
        {
            "architecture": arch,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": _digest(config_blob),
                "size": len(config_blob),
            },
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
        }
    )
    tag = spec.name.rpartition(":")[2] if ":" in spec.name.rpartition("/")[2] else "latest"
    index = _json(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": spec.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
    )
    members = [("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", index)]
    members += [
        (f"blobs/sha256/{_digest(blob).split(':', 1)[1]}", blob)
        for blob in (layer, config_blob, manifest)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs/", "blobs/sha256/"):
            tar.addfile(_tar_info(directory, tarfile.DIRTYPE, 0o755))
        for name, data in members:
            info = _tar_info(name, tarfile.REGTYPE, 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return _digest(manifest)
