"""The worker's side of a per-item command: started under an item guard (:mod:`queuejob.itemguard`).

Guarantees of :class:`ItemProcess`:

- the command cannot outlive the worker: the guard holds the read end of a pipe whose only write
  end is in this process (non-inheritable, so neither the guard nor the command has a copy);
  when this process dies, however it dies, the kernel closes it, and the guard SIGKILLs the
  command, its process group and every other descendant within moments;
- :meth:`abort` (any thread, idempotent) does the same on purpose, e.g. when the item's lease
  is lost; :meth:`terminate` (signal-handler safe) asks for a graceful stop: SIGTERM to the
  command, SIGKILL after the guard's grace period;
- the guard runs in a session of its own, so signals sent to the worker's process group (the
  node's SIGTERM/SIGKILL of the container) reach the command only through the guard;
- :meth:`wait` returns the command's exit code (negative: killed by that signal) and its stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence


class ItemProcess:
    """One per-item command running under its guard."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        """Start the guard; raises OSError if it cannot be started."""
        read_fd, write_fd = os.pipe()  # both non-inheritable; the guard gets read_fd explicitly
        try:
            self._guard = subprocess.Popen(
                [sys.executable, "-m", "queuejob.itemguard", str(read_fd), "--", *command],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
                pass_fds=(read_fd,),
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._write_fd: int | None = write_fd
        self._lock = threading.Lock()
        self.aborted = False

    @property
    def pid(self) -> int:
        """Pid of the guard (the command is its child)."""
        return self._guard.pid

    def abort(self) -> None:
        """Kill the command and all its descendants now (closes the pipe the guard watches)."""
        with self._lock:
            self.aborted = True
            self._close()

    def _close(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    def terminate(self) -> None:
        """Graceful stop: the guard sends SIGTERM to the command, SIGKILL after its grace."""
        if self._guard.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._guard.pid, signal.SIGTERM)

    def wait(self) -> tuple[int, str]:
        """Wait for the command (and its guard); returns (exit code, stderr)."""
        try:
            _, stderr = self._guard.communicate()
        finally:
            with self._lock:
                self._close()
        return self._guard.returncode, stderr or ""
