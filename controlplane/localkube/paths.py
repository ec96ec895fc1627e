"""Where localkube finds the control-plane binary and keeps the state of ``localkube up``.

Guarantees: every function returns an absolute path and never creates anything.
``LOCALKUBE_BIN`` overrides the binary, ``LOCALKUBE_STATE_DIR`` the CLI's state directory.
"""

from __future__ import annotations

import os
from pathlib import Path

_BINARY_HELP = "build it with `make controlplane` (or `bash controlplane/build.sh`)"


def project_root() -> Path:
    """The checkout this package lives in (editable install), else the current directory."""
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd().resolve()


def bin_dir() -> Path:
    """``.build/bin`` of the checkout: holds ``kube-local`` and the ``kubectl`` symlink."""
    return project_root() / ".build" / "bin"


def kube_local_binary() -> Path:
    """The multi-call control-plane binary (``LOCALKUBE_BIN`` or ``.build/bin/kube-local``)."""
    override = os.environ.get("LOCALKUBE_BIN")
    return Path(override).absolute() if override else bin_dir() / "kube-local"


def kubectl_binary() -> Path:
    """The project's kubectl (``.build/bin/kubectl``, a symlink to ``kube-local``)."""
    return kube_local_binary().parent / "kubectl"


def pause_binary() -> Path:
    """The real node's pod sandbox program (``localkube-pause``, next to ``kube-local``)."""
    return kube_local_binary().parent / "localkube-pause"


def coredns_binary() -> Path:
    """The real node's cluster DNS (``localkube-coredns``, next to ``kube-local``)."""
    return kube_local_binary().parent / "localkube-coredns"


def default_state_dir() -> Path:
    """State directory of the CLI: ``.build/cluster`` (``LOCALKUBE_STATE_DIR`` overrides)."""
    override = os.environ.get("LOCALKUBE_STATE_DIR")
    return Path(override).absolute() if override else project_root() / ".build" / "cluster"


def require_binary() -> Path:
    """Return the binary or raise ``FileNotFoundError`` saying how to build it."""
    binary = kube_local_binary()
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"control-plane binary not found at {binary}: {_BINARY_HELP}")
    return binary
