#!/usr/bin/env python3
"""Generate the Kubernetes-derived parts of ``controlplane/go/go.mod``.

Kubernetes' own go.mod requires its staging modules (``k8s.io/api``, ``k8s.io/client-go``, ...)
at the placeholder version ``v0.0.0`` and replaces them with directories that only exist in the
Kubernetes git tree. A module that depends on ``k8s.io/kubernetes`` must therefore replace each
of them with the published ``v0.Y.Z`` release that matches ``v1.Y.Z``. This script derives that
list, plus the ``go`` directive and the ``godebug`` defaults, from the go.mod of the pinned
``k8s.io/kubernetes`` release, so nothing is hand-typed.

Guarantees:
  * The pinned release is read from our go.mod (``require k8s.io/kubernetes vX``); bump it
    there, then run this script.
  * Every ``k8s.io/*`` requirement that Kubernetes lists at ``v0.0.0`` gets exactly one replace
    to the matching ``v0.Y.Z``; stale ``k8s.io/*`` replaces are dropped; other replaces stay.
  * Our ``go`` directive and ``godebug`` lines equal Kubernetes' own (stale keys are dropped).
  * Idempotent: a second run changes nothing. ``--check`` only reports drift (exit 1 on drift).
  * Edits go through ``go mod edit``; ``go mod tidy`` then completes go.mod and go.sum (skip
    with ``--no-tidy``).

Only the Python standard library and the ``go`` command are used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KUBERNETES = "k8s.io/kubernetes"
STAGING_PREFIX = "k8s.io/"
PLACEHOLDER = "v0.0.0"
MODULE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Desired:
    """The go.mod state this script is responsible for."""

    go: str
    godebug: dict[str, str]
    replaces: dict[str, str]  # module path -> version of the same path


def go_json(*args: str, cwd: Path = MODULE_DIR) -> Any:
    """Run ``go ARGS`` and decode its JSON output; exit with the command's stderr on failure."""
    proc = subprocess.run(["go", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"gen_gomod: 'go {' '.join(args)}' failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout)


def pinned_kubernetes(ours: dict[str, Any]) -> str:
    """Return the k8s.io/kubernetes version our go.mod requires."""
    for req in ours.get("Require") or []:
        if req["Path"] == KUBERNETES:
            return str(req["Version"])
    sys.exit(f"gen_gomod: go.mod must 'require {KUBERNETES} v1.Y.Z' (not found)")


def staging_version(kubernetes_version: str) -> str:
    """Map a Kubernetes release ``v1.Y.Z`` to its staging modules' version ``v0.Y.Z``."""
    major, _, rest = kubernetes_version.partition(".")
    if major != "v1" or not rest:
        sys.exit(f"gen_gomod: unexpected {KUBERNETES} version {kubernetes_version!r}, want v1.Y.Z")
    return f"v0.{rest}"


def desired_state(kubernetes_version: str) -> Desired:
    """Read the pinned Kubernetes go.mod (via the module proxy/cache) and derive our directives."""
    # Run outside our module, so that a broken go.mod here cannot get in the way.
    with tempfile.TemporaryDirectory() as outside:
        module = f"{KUBERNETES}@{kubernetes_version}"
        info = go_json("mod", "download", "-json", module, cwd=Path(outside))
    if info.get("Error") or not info.get("GoMod"):
        error = info.get("Error")
        sys.exit(f"gen_gomod: cannot download {KUBERNETES}@{kubernetes_version}: {error}")
    theirs = go_json("mod", "edit", "-json", info["GoMod"])
    version = staging_version(kubernetes_version)
    replaces = {
        req["Path"]: version
        for req in theirs.get("Require") or []
        if req["Path"].startswith(STAGING_PREFIX) and req["Version"] == PLACEHOLDER
    }
    if not replaces:
        sys.exit(f"gen_gomod: no {PLACEHOLDER} staging requirements in {info['GoMod']}")
    godebug = {g["Key"]: g["Value"] for g in theirs.get("GoDebug") or []}
    return Desired(go=theirs["Go"], godebug=godebug, replaces=replaces)


def edit_flags(ours: dict[str, Any], want: Desired) -> list[str]:
    """Return the ``go mod edit`` flags that turn our go.mod into ``want`` (empty if it matches)."""
    flags: list[str] = []
    if ours.get("Go") != want.go:
        flags.append(f"-go={want.go}")
    have_godebug = {g["Key"]: g["Value"] for g in ours.get("GoDebug") or []}
    for key in sorted(have_godebug.keys() - want.godebug.keys()):
        flags.append(f"-dropgodebug={key}")
    for key, value in sorted(want.godebug.items()):
        if have_godebug.get(key) != value:
            flags.append(f"-godebug={key}={value}")
    have_replaces: dict[str, tuple[str, str, str]] = {}
    for rep in ours.get("Replace") or []:
        old, new = rep["Old"], rep["New"]
        have_replaces[old["Path"]] = (old.get("Version", ""), new["Path"], new.get("Version", ""))
    for path, (old_version, _, _) in sorted(have_replaces.items()):
        if path.startswith(STAGING_PREFIX) and path not in want.replaces:
            flags.append(f"-dropreplace={path}" + (f"@{old_version}" if old_version else ""))
    for path, version in sorted(want.replaces.items()):
        if have_replaces.get(path) != ("", path, version):
            if path in have_replaces and have_replaces[path][0]:
                flags.append(f"-dropreplace={path}@{have_replaces[path][0]}")
            flags.append(f"-replace={path}={path}@{version}")
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    parser.add_argument("--no-tidy", action="store_true", help="skip 'go mod tidy' afterwards")
    args = parser.parse_args(argv)
    if shutil.which("go") is None:
        sys.exit("gen_gomod: the 'go' command is required (https://go.dev/dl/)")

    ours = go_json("mod", "edit", "-json")
    kubernetes_version = pinned_kubernetes(ours)
    want = desired_state(kubernetes_version)
    flags = edit_flags(ours, want)
    summary = (
        f"{KUBERNETES} {kubernetes_version}: go {want.go}, {len(want.godebug)} godebug line(s), "
        f"{len(want.replaces)} staging replaces -> {staging_version(kubernetes_version)}"
    )
    if args.check:
        if flags:
            print(f"gen_gomod: go.mod is out of date ({summary}); run {Path(__file__).name}:")
            print("  go mod edit " + " ".join(flags))
            return 1
        print(f"gen_gomod: go.mod is up to date ({summary})")
        return 0
    if flags:
        subprocess.run(["go", "mod", "edit", *flags], cwd=MODULE_DIR, check=True)
        print(f"gen_gomod: applied {len(flags)} edit(s) ({summary})")
    else:
        print(f"gen_gomod: go.mod already up to date ({summary})")
    if not args.no_tidy:
        subprocess.run(["go", "mod", "tidy"], cwd=MODULE_DIR, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
