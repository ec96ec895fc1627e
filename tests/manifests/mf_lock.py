"""Generate requirements.lock: the pinned runtime dependency closure of this project.

Walks the installed metadata (this repo's .venv) from ``[project].dependencies`` of
pyproject.toml, without extras, evaluating environment markers for this interpreter (CPython
3.11 on Linux, like the image), and pins every package reached to its installed version.

    .venv/bin/python tests/manifests/mf_lock.py > requirements.lock

tests/manifests/test_mf_image.py fails while requirements.lock misses a runtime dependency.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]

HEADER = """\
# Runtime dependency lock for the container image (queuejob:dev). GENERATED, do not edit:
#   .venv/bin/python tests/manifests/mf_lock.py > requirements.lock
#
# The exact closure of `queuejob-operator`'s runtime dependencies (no dev extras), as installed
# in this repo's .venv for CPython 3.11 on Linux. The Dockerfile installs exactly these with
# `--no-deps --only-binary=:all:` and then runs `pip check`, so a missing or mismatched pin fails
# the image build instead of pulling an unpinned version. tests/manifests/test_mf_image.py fails
# while a runtime dependency is missing here or pinned to a version a requirement rejects (e.g.
# after a change in pyproject.toml: run `make install`, then the command above).
"""


def runtime_closure() -> tuple[dict[str, str], list[Requirement]]:
    """(canonical name -> installed version, every requirement met on the way)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = {**default_environment(), "extra": ""}
    todo = [Requirement(spec) for spec in project["dependencies"]]
    pins: dict[str, str] = {}
    met: list[Requirement] = []
    while todo:
        req = todo.pop()
        if req.marker and not req.marker.evaluate(env):
            continue
        met.append(req)
        name = canonicalize_name(req.name)
        if name in pins:
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            raise SystemExit(f"{req.name} is not installed: run `make install`") from None
        pins[name] = dist.version
        todo.extend(Requirement(r) for r in dist.requires or [])
    return pins, met


def runtime_pins() -> dict[str, str]:
    """Canonical package name -> installed version, for every runtime dependency."""
    return runtime_closure()[0]


def lock_text() -> str:
    """The full text requirements.lock must have."""
    return HEADER + "".join(
        f"{name}=={version}\n" for name, version in sorted(runtime_pins().items())
    )


if __name__ == "__main__":
    print(lock_text(), end="")
