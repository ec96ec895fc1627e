"""The processes behind the demo and the operator benchmark: control plane, Redis, operator.

:class:`OperatorProcess` runs ``queuejob operator`` as a child process against a kubeconfig and a
Redis. Guarantees:

- everything listens on 127.0.0.1 only: the operator's liveness and metrics endpoints get free
  loopback ports (the operator's defaults bind 0.0.0.0);
- the Redis password is passed in ``QUEUEJOB_REDIS_PASSWORD``, never on a command line;
- its output goes to a log file; :meth:`OperatorProcess.log_tail` quotes it when something fails;
- :meth:`OperatorProcess.stop` sends SIGTERM, waits, then SIGKILLs; it is idempotent.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from types import TracebackType


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def queuejob_command() -> list[str]:
    """The ``queuejob`` console script of this environment (next to the running Python)."""
    beside = pathlib.Path(sys.executable).parent / "queuejob"
    if os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("queuejob")
    if found is None:
        raise FileNotFoundError("the `queuejob` command is not installed (run `make install`)")
    return [found]


class OperatorProcess:
    """``queuejob operator`` as a child process (see the module docstring)."""

    def __init__(
        self,
        kubeconfig: pathlib.Path,
        redis_url: str,
        redis_password: str | None,
        log_file: pathlib.Path,
        *,
        namespaces: tuple[str, ...] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_file = log_file
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "QUEUEJOB_REDIS_URL": redis_url,
            "QUEUEJOB_REDIS_PASSWORD": redis_password or "",
            "QUEUEJOB_LIVENESS": f"http://127.0.0.1:{self.liveness_port}/healthz",
            "QUEUEJOB_METRICS_ADDRESS": "127.0.0.1",
            "QUEUEJOB_METRICS_PORT": str(self.metrics_port),
            "QUEUEJOB_NAMESPACES": ",".join(namespaces),
            **(extra_env or {}),
        }
        self.argv = [*queuejob_command(), "operator"]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "operator not started"
        return self.process.pid

    def start(self, ready_timeout: float = 60.0) -> OperatorProcess:
        """Start the operator and wait until its liveness endpoint answers."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C goes to the demo, which stops us in order
            )
        deadline = time.monotonic() + ready_timeout
        while not self._alive_probe():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the operator exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the operator's liveness endpoint did not answer in {ready_timeout:.0f}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.2)
        return self

    def _alive_probe(self) -> bool:
        url = self.env["QUEUEJOB_LIVENESS"]
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def check(self) -> None:
        """Raise if the operator has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"the operator exited with code {self.process.returncode}:\n{self.log_tail()}"
            )

    def metrics_text(self) -> str:
        """The operator's Prometheus /metrics page."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the operator's log."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no operator log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL (idempotent)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
