"""Stop an image build early when the base's Python is outside requirements.lock's range.

    python3 check_python_range.py requirements.lock

The lock's header line ``# python: >=3.11.0,<3.12`` names the CPython versions its pins (binary
wheels for cp311, and markers such as redis' ``async-timeout ; python_full_version < "3.11.3"``)
are valid for. Exit 0 and one line saying so inside the range; otherwise exit 1 with a message
naming the base's version, the range and the way out. Standard library only (it runs on the bare
base image, before anything is installed).
"""

from __future__ import annotations

import re
import sys


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def check(lock_text: str, have: tuple[int, int, int], implementation: str) -> str | None:
    """None when ``have`` is in the lock's range, else the error message."""
    found = re.search(r"^# python: >=([0-9.]+),<([0-9.]+)$", lock_text, re.MULTILINE)
    if not found:
        return "ERROR: requirements.lock has no '# python: >=X,<Y' line"
    low, high = found.groups()
    shown = ".".join(map(str, have))
    if implementation == "cpython" and version(low) <= have < version(high):
        return None
    return (
        f"ERROR: the base image has {implementation} {shown}, but requirements.lock is valid for "
        f"CPython >={low},<{high} only: build on another base (make image PYTHON_IMAGE=...)"
    )


def main(path: str) -> int:
    with open(path, encoding="utf-8") as lock:
        error = check(lock.read(), sys.version_info[:3], sys.implementation.name)
    if error:
        print(error, file=sys.stderr)
        return 1
    print(f"base image Python {sys.version.split()[0]}: in requirements.lock's range")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
