"""The processes behind the demo and the operator benchmark: control plane, Redis, operator.

:class:`OperatorProcess` runs ``queuejob operator`` as a child process against a kubeconfig and a
Redis. Guarantees:

- everything listens on 127.0.0.1 only: the operator's liveness and metrics endpoints get free
  loopback ports (the operator's defaults bind 0.0.0.0);
- the Redis password is passed in ``QUEUEJOB_REDIS_PASSWORD``, never on a command line;
- its output is appended to a log file (across restarts); :meth:`OperatorProcess.log_tail`
  quotes it when something fails;
- it runs as a :class:`localkube.process.Component`: its own process group, SIGTERMed by the
  kernel if the process that started it dies, and :meth:`OperatorProcess.stop` sends SIGTERM,
  waits, then SIGKILLs the group; stop is idempotent and start may follow it (a restart).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from types import TracebackType

from localkube.process import Component, free_port, tail


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
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_file = log_file
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
        self.env = {
            **inherited,
            "KUBECONFIG": str(kubeconfig),
            "QUEUEJOB_REDIS_URL": redis_url,
            "QUEUEJOB_REDIS_PASSWORD": redis_password or "",
            "QUEUEJOB_LIVENESS": f"http://127.0.0.1:{self.liveness_port}/healthz",
            "QUEUEJOB_METRICS_ADDRESS": "127.0.0.1",
            "QUEUEJOB_METRICS_PORT": str(self.metrics_port),
            "QUEUEJOB_NAMESPACES": ",".join(namespaces),
            **(extra_env or {}),
        }
        self.component = Component(
            "operator", [*queuejob_command(), "operator", *extra_args], log_file
        )

    @property
    def pid(self) -> int:
        return self.component.pid

    def start(self, ready_timeout: float = 60.0) -> OperatorProcess:
        """Start the operator and wait until its liveness endpoint answers."""
        self.component.start(self.env)
        deadline = time.monotonic() + ready_timeout
        while not self._alive_probe():
            self.check()
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
        """Raise if the operator has exited (the message quotes the end of its log)."""
        if self.component.exit_code() is not None:
            raise RuntimeError(self.component.describe_exit(lines=30))

    def metrics_text(self) -> str:
        """The operator's Prometheus /metrics page."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the operator's log."""
        return tail(self.log_file, lines)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL (idempotent)."""
        self.component.stop(grace)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
