"""Kubeconfig files with the credentials embedded, so a copy works from anywhere."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from localkube.certs import KeyPair


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_cert: Path,
    client: KeyPair,
    user: str,
    cluster_name: str = "localkube",
    embed: bool = True,
) -> Path:
    """Write a single-context kubeconfig (mode 0600) for ``user`` at ``server``; return ``path``.

    ``embed=False`` references the PEM files by path instead of embedding them (clients such as
    pykube-ng would otherwise copy embedded credentials into temporary files).
    """
    context = f"{user}@{cluster_name}"
    cluster: dict[str, str] = {"server": server}
    credentials: dict[str, str] = {}
    if embed:
        cluster["certificate-authority-data"] = _b64(ca_cert)
        credentials["client-certificate-data"] = _b64(client.cert)
        credentials["client-key-data"] = _b64(client.key)
    else:
        cluster["certificate-authority"] = str(ca_cert)
        credentials["client-certificate"] = str(client.cert)
        credentials["client-key"] = str(client.key)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(document, f, sort_keys=False)
    tmp.replace(path)
    return path
