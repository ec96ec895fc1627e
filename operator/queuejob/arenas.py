"""Cap glibc's malloc arenas in the operator process (unless ``MALLOC_ARENA_MAX`` is set).

glibc gives threads their own malloc arenas (up to 8 per core) so that they do not contend for
one lock. The operator's threads (the pool that runs Redis and Kubernetes calls, the metrics
server, the leader election) allocate response buffers, JSON and TLS records there, and memory
freed in an arena stays mapped in it. With two arenas the operator's peak RSS at 1,000
QueueJobs was about 10 MiB lower (163 -> 153 MiB in a paired run, see docs/benchmarks.md); its
threads spend their time waiting on sockets, not contending for the allocator.

:func:`cap_arenas` calls ``mallopt(M_ARENA_MAX, n)`` before the operator starts its threads; an
explicit ``MALLOC_ARENA_MAX`` in the environment (read by glibc itself) wins, and a C library
without ``mallopt`` (musl) is left alone.
"""

from __future__ import annotations

import ctypes
import os

#: glibc's ``M_ARENA_MAX`` parameter number (malloc.h).
M_ARENA_MAX = -8
#: The operator's default cap.
DEFAULT_ARENAS = 2


def cap_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Limit glibc's malloc arenas to ``arenas``; True if applied.

    Not applied when ``MALLOC_ARENA_MAX`` is set (glibc already obeys it), when ``arenas`` is
    below 1, or when the C library has no ``mallopt`` or refuses the value.
    """
    if arenas < 1 or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into the process: its C library
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas) == 1)
