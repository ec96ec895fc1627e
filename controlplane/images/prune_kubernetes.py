"""Remove from an image's virtualenv the parts of the ``kubernetes`` client it never imports.

    /opt/venv/bin/python prune_kubernetes.py          # prune, then print what went
    /opt/venv/bin/python prune_kubernetes.py --check  # exit 1 unless nothing is left to prune

The official client is a generated package: about 125 MB, of which the image uses a sliver.
The operator builds its own requests on the bare ``ApiClient`` (``queuejob.kube``) and runs
its leader election with ``kubernetes.leaderelection`` on one ``CoordinationV1Api``; kopf
imports two models (``V1ObjectMeta``, ``V1OwnerReference``) to recognise them. Everything else
goes:

- ``kubernetes/aio``: the asyncio twin of the whole client (half the package), never imported;
- the generated API classes (``kubernetes/client/api``) and models (``kubernetes/client/models``)
  outside the set this image needs, and their compiled ``.pyc``;
- the package's own tests (``*_test.py``, ``test_*.py``, ``e2e_test/``).

What is needed is found, not listed: every module of the image's packages (``queuejob``,
``workqueue``) and ``kopf`` is imported; every ``kubernetes.client.<Name>`` those sources
mention is resolved; every model an API class names in its response types (resolved by name
when a response is read) is imported; the generated modules then loaded are the ones kept.
Both generated packages load their members lazily (``__getattr__``), so a pruned one costs
nothing until something asks for it, and then fails with ``ModuleNotFoundError`` naming it.

Guarantees: only files under ``kubernetes/`` are removed, and the distribution's RECORD is
rewritten to list exactly the files that remain (its name and version are untouched, so
``importlib.metadata`` and ``pip check`` see the same ``kubernetes`` as before). ``--check``
imports everything again in the pruned tree, so a module pruned by mistake fails the build.
"""

from __future__ import annotations

import ast
import csv
import importlib
import importlib.metadata
import io
import pkgutil
import re
import shutil
import sys
from pathlib import Path

#: The packages of the image whose imports decide what stays.
PRODUCT = ("queuejob", "workqueue")
#: Imported as well: kopf looks for the client's models by import (helpers/thirdparty.py).
ALSO_IMPORTED = ("kopf",)
#: The generated packages that are pruned module by module.
GENERATED = ("kubernetes.client.api", "kubernetes.client.models")
_QUOTED_NAME = re.compile(r"""["']([A-Z][A-Za-z0-9]+)["']""")


def _package_dir(name: str) -> Path:
    return Path(importlib.import_module(name).__file__ or "").parent


def referenced_names(sources: list[Path]) -> set[str]:
    """Names the sources take from ``kubernetes.client``: ``kubernetes.client.Name`` attribute
    chains and ``from kubernetes.client import Name``."""
    names: set[str] = set()
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "kubernetes.client":
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Attribute) and ast.unparse(node.value) == "kubernetes.client":
                names.add(node.attr)
    return names


def needed_modules() -> set[str]:
    """Import what the image runs and return the generated modules that were loaded."""
    sources: list[Path] = []
    for package in PRODUCT:
        root = importlib.import_module(package)
        sources += sorted(_package_dir(package).rglob("*.py"))
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            importlib.import_module(info.name)
    for package in ALSO_IMPORTED:
        importlib.import_module(package)
    import kubernetes.client
    import kubernetes.client.models

    for name in sorted(referenced_names(sources)):
        getattr(kubernetes.client, name)  # AttributeError/ModuleNotFoundError: pruned wrongly
    models = set(kubernetes.client.models.__all__)
    seen: set[str] = set()
    while True:  # the models named in the loaded API classes' response types, to a fixed point
        api_modules = {m for m in sys.modules if m.startswith(f"{GENERATED[0]}.")} - seen
        if not api_modules:
            break
        for module in sorted(api_modules):
            text = Path(sys.modules[module].__file__ or "").read_text()
            for name in sorted(set(_QUOTED_NAME.findall(text)) & models):
                getattr(kubernetes.client.models, name)
        seen |= api_modules
    return {m for m in sys.modules if m.startswith(tuple(f"{g}." for g in GENERATED))}


def prunable(root: Path, keep: set[str]) -> list[Path]:
    """Files and directories under ``root`` (the ``kubernetes`` package) that may go."""
    out: list[Path] = []
    if (root / "aio").exists():
        out.append(root / "aio")
    for package in GENERATED:
        directory = root.parent / package.replace(".", "/")
        for path in sorted(directory.glob("*.py")):
            if path.name != "__init__.py" and f"{package}.{path.stem}" not in keep:
                out.append(path)
                out += sorted((directory / "__pycache__").glob(f"{path.stem}.*.pyc"))
    for path in sorted(root.rglob("*.py")):
        if path.name.endswith("_test.py") or path.name.startswith("test_"):
            out.append(path)
            out += sorted((path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"))
    out += [path for path in sorted(root.rglob("e2e_test")) if path.is_dir()]
    dirs = [path for path in out if path.is_dir()]
    return [
        path
        for path in dict.fromkeys(out)  # in order, once; nothing inside a directory that goes
        if path.resolve().is_relative_to(root) and not any(d in path.parents for d in dirs)
    ]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def rewrite_record(dist: importlib.metadata.Distribution) -> int:
    """Drop the RECORD rows of files that no longer exist; the number of rows dropped."""
    record = next(f for f in dist.files or () if f.name == "RECORD" and "dist-info" in str(f))
    path = Path(str(record.locate()))
    base = Path(str(dist.locate_file("")))
    rows = [row for row in csv.reader(io.StringIO(path.read_text())) if row]
    kept = [row for row in rows if (base / row[0]).exists()]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    path.write_text(out.getvalue())
    return len(rows) - len(kept)


def main(argv: list[str]) -> int:
    check = argv[1:] == ["--check"]
    keep = needed_modules()
    root = _package_dir("kubernetes")
    doomed = prunable(root, keep)
    apis = sorted(m.rsplit(".", 1)[1] for m in keep if m.startswith(f"{GENERATED[0]}."))
    if check:
        if doomed:
            print(f"prune_kubernetes: still prunable: {[str(p) for p in doomed[:10]]}")
            return 1
        print(f"prune_kubernetes: checked: the image's imports resolve; API modules {apis}")
        return 0
    before = _size(root)
    count = 0
    for path in doomed:
        count += sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 1
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    dropped = rewrite_record(importlib.metadata.distribution("kubernetes"))
    after = _size(root)
    models = sum(1 for m in keep if m.startswith(f"{GENERATED[1]}."))
    print(
        f"prune_kubernetes: removed {count} files, {(before - after) / 1e6:.1f} MB "
        f"({before / 1e6:.1f} -> {after / 1e6:.1f} MB; {dropped} RECORD rows dropped); "
        f"kept API modules {apis} and {models} model modules"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
