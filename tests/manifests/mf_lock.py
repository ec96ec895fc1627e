"""Generate requirements.lock: the pinned runtime dependency closure of this project.

Walks the installed metadata (this repo's .venv) from ``[project].dependencies`` of
pyproject.toml, without extras, and pins every package reached to its installed version. The lock
is valid for every CPython of PYTHON_RANGE on Linux: environment markers are evaluated at both
ends of the range, and a package needed at only one end (redis' async-timeout below 3.11.3, as on
Debian bookworm's 3.11.2) is pinned with its marker. Such a package must be installed in the
.venv too (the dev extra holds it) so that its version is known.

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

#: The CPython versions the lock is valid for: its binary wheels are cp311. The Dockerfile reads
#: this line of the header and stops early on a base image outside the range.
PYTHON_RANGE = (">=3.11.0", "<3.12")
#: python_full_version at the two ends of PYTHON_RANGE (markers are evaluated at both).
RANGE_ENDS = ("3.11.0", "3.11.99")

HEADER = f"""\
# Runtime dependency lock for the container image (queuejob:dev). GENERATED, do not edit:
#   .venv/bin/python tests/manifests/mf_lock.py > requirements.lock
#
# The exact closure of `queuejob-operator`'s runtime dependencies (no dev extras), as installed
# in this repo's .venv for CPython 3.11 on Linux. The Dockerfile installs exactly these with
# `--no-deps --only-binary=:all:` and then runs `pip check`, so a missing or mismatched pin fails
# the image build instead of pulling an unpinned version. tests/manifests/test_mf_image.py fails
# while a runtime dependency is missing here or pinned to a version a requirement rejects (e.g.
# after a change in pyproject.toml: run `make install`, then the command above).
# python: {",".join(PYTHON_RANGE)}
"""


def _environments() -> list[dict[str, str]]:
    """Marker environments at both ends of PYTHON_RANGE (Linux, this machine's platform)."""
    base = {**default_environment(), "extra": ""}
    return [{**base, "python_full_version": v, "python_version": "3.11"} for v in RANGE_ENDS]


def runtime_closure() -> tuple[dict[str, str], list[Requirement], dict[str, str]]:
    """(name -> installed version, every requirement met, name -> marker of partial needs).

    A package reached at both ends of the range has no entry in the third mapping; one reached at
    one end only maps to the marker of the requirement that brought it in.
    """
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins: dict[str, str] = {}
    met: list[Requirement] = []
    partial: dict[str, str] = {}
    everywhere: set[str] = set()
    for env in _environments():
        todo = [Requirement(spec) for spec in project["dependencies"]]
        seen: set[str] = set()
        while todo:
            req = todo.pop()
            if req.marker and not req.marker.evaluate(env):
                continue
            met.append(req)
            name = canonicalize_name(req.name)
            if req.marker and any(
                k in str(req.marker) for k in ("python_full_version", "python_version")
            ):
                partial.setdefault(name, str(req.marker))
            else:
                everywhere.add(name)
            if name in seen:
                continue
            seen.add(name)
            try:
                dist = distribution(req.name)
            except PackageNotFoundError:
                raise SystemExit(f"{req.name} is not installed: run `make install`") from None
            pins[name] = dist.version
            todo.extend(Requirement(r) for r in dist.requires or [])
    return pins, met, {n: m for n, m in partial.items() if n not in everywhere}


def runtime_pins() -> dict[str, str]:
    """Canonical package name -> installed version, for every runtime dependency."""
    return runtime_closure()[0]


def lock_text() -> str:
    """The full text requirements.lock must have."""
    pins, _, markers = runtime_closure()
    return HEADER + "".join(
        f"{name}=={version}" + (f" ; {markers[name]}" if name in markers else "") + "\n"
        for name, version in sorted(pins.items())
    )


if __name__ == "__main__":
    print(lock_text(), end="")
