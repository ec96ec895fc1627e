"""The item guard: a small process between the worker and a per-item command (Linux only).

Run as ``python -m queuejob.itemguard FD -- COMMAND...`` by :mod:`queuejob.itemproc`, with FD the
read end of a pipe whose write end only the worker holds. Guarantees:

- the command runs in a process group of its own, with the guard's environment, stdin, stdout
  and stderr; the guard exits with the command's exit code, or dies of the signal that killed
  it (so the worker sees what a direct child would have shown);
- **end of file on FD** - the worker died (even of SIGKILL: the kernel closes its pipe end) or
  abandoned the item - kills the command's process group with SIGKILL at once;
- **SIGTERM** (or SIGINT) to the guard is a graceful stop: the command's group gets SIGTERM, and
  SIGKILL :data:`STOP_GRACE` seconds later if it is still there;
- when the command ends, in any of these ways, the rest of its process group is killed with
  SIGKILL, and so is every other descendant: the guard is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), so processes orphaned below it, also ones that left the process
  group with ``setsid``, become its children and are killed and reaped before it exits;
- if the guard itself is killed, the command gets SIGKILL from the kernel
  (``PR_SET_PDEATHSIG``, set in the command's process right before it executes; the guard is
  single-threaded, so the forking thread is the guard).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Seconds between SIGTERM and SIGKILL on a graceful stop (below the pod's 30 s grace period).
STOP_GRACE = float(os.environ.get("QUEUEJOB_ITEM_STOP_GRACE", "10"))
POLL = 0.05
#: Exit code of the guard when it cannot run at all (bad arguments, the command is not found).
EXIT_USAGE = 127


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _die_with_parent(parent: int) -> None:
    """``preexec_fn`` of the command: SIGKILL when the guard dies (and if it is already gone)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(EXIT_USAGE)


def children(parent: int) -> list[int]:
    """Pids of the live processes whose parent is ``parent`` (read from ``/proc/*/stat``)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def kill_descendants(timeout: float = 5.0) -> None:
    """SIGKILL every descendant of this process and reap it, until none is left (or timeout)."""
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        pids = children(me)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL / 5)


def _killpg(group: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def run(fd: int, command: list[str]) -> int:
    """Run ``command`` under the guarantees above; returns its wait status as Popen reports it."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    stop_requested: list[float] = []

    def on_stop(_signum: int, _frame: FrameType | None) -> None:
        if not stop_requested:
            stop_requested.append(time.monotonic())

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    me = os.getpid()
    try:
        child = subprocess.Popen(command, process_group=0, preexec_fn=lambda: _die_with_parent(me))
    except OSError as exc:
        print(f"cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    # A pidfd turns readable when the command exits, so the loop wakes at once (Linux >= 5.3);
    # without one, the command's exit is noticed within POLL seconds.
    watched = [fd]
    with contextlib.suppress(OSError, AttributeError):
        watched.append(os.pidfd_open(child.pid))
    terminated = False
    while child.poll() is None:
        readable, _, _ = select.select(watched, [], [], POLL)
        if fd in readable and not os.read(fd, 4096):  # EOF: the worker is gone or gave up
            _killpg(child.pid, signal.SIGKILL)
            break
        if stop_requested and not terminated:
            terminated = True
            _killpg(child.pid, signal.SIGTERM)
        if stop_requested and time.monotonic() - stop_requested[0] >= STOP_GRACE:
            _killpg(child.pid, signal.SIGKILL)
            break
    code = child.wait()
    _killpg(child.pid, signal.SIGKILL)  # whatever the command left running in its group
    kill_descendants()
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m queuejob.itemguard FD -- COMMAND...``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print("usage: python -m queuejob.itemguard FD -- COMMAND...", file=sys.stderr)
        return EXIT_USAGE
    code = run(int(args[0]), args[2:])
    if code < 0:  # killed by a signal: die of the same one (SIGKILL and SIGSTOP need no reset)
        sys.stdout.flush()
        sys.stderr.flush()
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        time.sleep(1)  # a signal whose default is to be ignored: fall through to 128 + signal
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main())
