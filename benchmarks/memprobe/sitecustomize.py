"""Allocation tracing for ``bench_operator.py --tracemalloc`` (a benchmark aid, never deployed).

The benchmark puts this directory first on the operator's ``PYTHONPATH``, so Python imports this
module at start-up (``site``'s ``sitecustomize`` hook). With ``QUEUEJOB_BENCH_TRACEMALLOC`` set
to a file path it starts :mod:`tracemalloc` (``QUEUEJOB_BENCH_TRACEMALLOC_FRAMES`` frames per
allocation, default 12) and, on every SIGUSR2, writes a snapshot to that path (to a temporary
name first, then renamed, so a reader never sees half a file). Without the variable it does
nothing.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from types import FrameType

_PATH = os.environ.get("QUEUEJOB_BENCH_TRACEMALLOC")


def _dump(signum: int, frame: FrameType | None) -> None:
    assert _PATH is not None
    partial = f"{_PATH}.partial"
    tracemalloc.take_snapshot().dump(partial)
    os.replace(partial, _PATH)


if _PATH:
    tracemalloc.start(int(os.environ.get("QUEUEJOB_BENCH_TRACEMALLOC_FRAMES", "12")))
    signal.signal(signal.SIGUSR2, _dump)
