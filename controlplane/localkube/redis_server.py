"""Launch a real Debian ``redis-server`` on loopback for tests, benchmarks and the local demo.

Guarantees:

- The server listens on ``127.0.0.1`` only (``protected-mode yes``), on a free port picked at
  ``start()`` (or the one given), and requires a password (a random one unless told otherwise;
  ``password=None`` disables auth, for tests of that case only).
- The password never appears on a command line: it goes into a ``0600`` config file in the
  server's own data directory.
- ``restart()`` brings the server back on the *same* port with the *same* password, so clients
  reconnect to it; with ``persist=True`` (AOF, fsync on every write) the data survives a
  ``stop()``/``kill()`` and restart, which is what outage tests need. Without it nothing is
  written to disk.
- ``start()`` returns only when the server answers ``PING``; if it dies first, the error carries
  the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from localkube.process import free_port

HOST: Final = "127.0.0.1"


class _Random:
    """Marker for "generate a random password"."""

    def __repr__(self) -> str:
        return "<random>"


RANDOM_PASSWORD: Final = _Random()


class RedisServerError(RuntimeError):
    """The redis-server process could not be started or did not become ready."""


def find_redis_server() -> str:
    """Path of the ``redis-server`` executable: ``/usr/bin/redis-server`` or the one on PATH."""
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerError(
            "redis-server not found in /usr/bin or on PATH "
            "(install it: apt-get install redis-server)"
        )
    return found


class RedisServer:
    """A ``redis-server`` child process on loopback (see the module doc for guarantees)."""

    def __init__(
        self,
        password: str | _Random | None = RANDOM_PASSWORD,
        port: int | None = None,
        data_dir: Path | None = None,
        *,
        persist: bool = False,
        executable: str | None = None,
        ready_timeout: float = 15.0,
        extra_config: tuple[str, ...] = (),
    ) -> None:
        self.password: str | None = (
            secrets.token_urlsafe(24) if isinstance(password, _Random) else password
        )
        self.host: str = HOST
        self._requested_port = port
        self._port: int | None = port
        self._own_dir = data_dir is None
        self._data_dir: Path | None = data_dir
        self.persist = persist
        self.executable = executable or find_redis_server()
        self.ready_timeout = ready_timeout
        #: Further ``redis.conf`` lines (e.g. the cluster settings of ``redis_cluster``).
        self.extra_config = extra_config
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("RedisServer has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``redis://:PASSWORD@127.0.0.1:PORT/0`` (no password part when auth is off)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RedisServerError("RedisServer has no data directory yet: call start() first")
        return self._data_dir

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new client for this server; ``decode_responses=True`` unless overridden."""
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "password": self.password,
            "decode_responses": True,
            "socket_connect_timeout": 5.0,
        }
        options.update(kwargs)
        return redis.Redis(**options)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server (no-op when running) and wait until it answers PING."""
        if self.running:
            return self
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="redis-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port()
        config = self._data_dir / "redis.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(self._config_text())
        self._proc = subprocess.Popen(
            [self.executable, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM; SIGKILL after ``timeout``). Keeps the data dir."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Kill the server with SIGKILL (a crash); ``persist=True`` data survives it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self) -> RedisServer:
        """Stop (if running) and start again on the same port with the same password."""
        self.stop()
        return self.start()

    @contextlib.contextmanager
    def outage(self, *, crash: bool = False) -> Iterator[None]:
        """Stop (or with ``crash=True`` kill) the server for the duration of the block."""
        if crash:
            self.kill()
        else:
            self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        """Stop the server and remove the data directory if this object created it."""
        self.stop()
        if self._own_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
        if self._requested_port is None:
            self._port = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer({self.host}:{self._port}, {state})"

    # -- internals -------------------------------------------------------------------------

    def _config_text(self) -> str:
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            "protected-mode yes",
            "daemonize no",
            f'dir "{self.data_dir}"',
            f'logfile "{self.log_file}"',
            "loglevel notice",
            'save ""',
            "databases 16",
            "maxclients 1000",
            "tcp-backlog 128",
        ]
        if self.persist:
            lines += ["appendonly yes", "appendfsync always", 'appendfilename "appendonly.aof"']
        else:
            lines += ["appendonly no"]
        if self.password:
            lines.append(f'requirepass "{self.password}"')
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        probe = self.client(socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
        last: Exception | None = None
        try:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    code = None if self._proc is None else self._proc.returncode
                    self._proc = None
                    raise RedisServerError(
                        f"redis-server on {self.host}:{self._port} exited with {code} during "
                        f"startup; log tail:\n{self._log_tail()}"
                    )
                try:
                    if probe.ping():
                        return
                except redis.exceptions.ConnectionError as exc:  # includes BusyLoadingError
                    last = exc
                time.sleep(0.02)
        finally:
            probe.close()
        self.kill()
        raise RedisServerError(
            f"redis-server on {self.host}:{self._port} not ready after {self.ready_timeout}s "
            f"({last}); log tail:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
