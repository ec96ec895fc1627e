"""``queuejob.arenas``: the operator caps glibc's malloc arenas, unless MALLOC_ARENA_MAX is set.

Each case runs in a fresh interpreter: eight threads allocate at once (blocks below the mmap
threshold, so they come from arenas) while holding them, then glibc's ``malloc_stats()`` lists
the arenas on stderr (the operator's images and this machine use glibc).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator"

PROGRAM = """
import ctypes, sys, threading
from queuejob.arenas import cap_arenas
print("applied" if cap_arenas(int(sys.argv[1])) else "skipped", flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
barrier = threading.Barrier(8)
held = []
def work():
    barrier.wait()
    held.extend(libc.malloc(4096) for _ in range(200))
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()
"""


def _arenas(cap: int, env: dict[str, str]) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(cap)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**env, "PYTHONPATH": str(OPERATOR)},
    )
    return result.stdout.strip(), result.stderr.count("Arena ")


def test_cap_limits_the_arenas_of_eight_threads() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    applied, capped = _arenas(2, env)
    assert applied == "applied"
    assert 1 <= capped <= 2
    # Without the cap the same threads spread over more arenas (glibc: up to 8 per core).
    skipped, uncapped = _arenas(0, env)
    assert skipped == "skipped"
    assert uncapped > capped


def test_an_explicit_malloc_arena_max_wins() -> None:
    env = {**os.environ, "MALLOC_ARENA_MAX": "3"}
    skipped, arenas = _arenas(2, env)
    assert skipped == "skipped"
    assert arenas <= 3
