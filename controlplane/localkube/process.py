"""Processes of the local cluster: start with a log file, watch, stop, find leftovers.

Every process localkube starts (components, the node agent and the pods it runs) carries the
environment variable ``LOCALKUBE_CLUSTER_ID=<id>``. That marker lets :func:`sweep` find and stop
anything of one cluster, even processes whose parent died, and lets :func:`is_ours` refuse to
signal a recycled pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER_ENV = "LOCALKUBE_CLUSTER_ID"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child must not dlopen


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when its parent dies.

    Linux delivers it when the parent *thread* exits, so components must be started from a
    thread that lives as long as the cluster (the main thread, in practice).
    """

    def preexec() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a (log) file, or a note that it is missing."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(data.splitlines()[-lines:])


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _marker_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = MARKER_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode()
    return None


def start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), "" when it is gone.

    Together with the pid it identifies a process even after the pid is recycled.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def is_ours(pid: int, cluster_id: str) -> bool:
    """True when ``pid`` is alive and carries this cluster's marker."""
    return alive(pid) and _marker_of(pid) == cluster_id


def marked_pids(cluster_id: str) -> list[int]:
    """All live processes carrying the marker of ``cluster_id`` (never this process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if pid != os.getpid() and is_ours(pid, cluster_id):
                found.append(pid)
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 when it is gone)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * PAGE_SIZE


def terminate_pids(pids: Sequence[int], grace: float) -> None:
    """SIGTERM each pid's process group, wait up to ``grace`` s, then SIGKILL what is left."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def sweep(cluster_id: str, grace: float = 5.0) -> list[int]:
    """Stop every remaining process of ``cluster_id``; return the pids that were found."""
    pids = marked_pids(cluster_id)
    if pids:
        terminate_pids(pids, grace)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
    return pids


@dataclass
class Component:
    """One long-running process with its own log file and process group."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: Mapping[str, str], cwd: Path | None = None) -> None:
        """Start the process in a new session, stdout+stderr appended to :attr:`log`.

        The process gets SIGTERM if this process dies first (no orphaned control plane when a
        test run is killed).
        """
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def exit_code(self) -> int | None:
        """None while running, else the exit code (negative: killed by that signal)."""
        return None if self.process is None else self.process.poll()

    def describe_exit(self, lines: int = 20) -> str:
        """A human-readable line saying how this component ended, plus its log tail."""
        code = self.exit_code()
        how = (
            f"was killed by signal {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exited with code {code}"
        )
        last = tail(self.log, lines)
        return f"{self.name} (pid {self.pid}) {how}; last lines of {self.log}:\n{last}"

    def stop(self, grace: float) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds, and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # The group may still hold children; the group id outlives the reaped leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
