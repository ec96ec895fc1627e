"""``python -m queuejob_demo.playground up|down|env|status`` (``make dev-up`` and friends).

A playground that stays up in the background: the local control plane (``localkube up``, node
agent), a password-protected ``redis-server`` and ``queuejob operator`` watching all namespaces,
so that ``kubectl apply`` of a QueueJob just works. Everything lives in one directory of the
checkout (default ``.build/dev``)::

    .build/dev/cluster/          the control plane's state (LOCALKUBE_STATE_DIR of `localkube up`)
    .build/dev/logs/             operator.log, redis.log, playground.log (the supervisor's)
    .build/dev/redis/            the Redis config (mode 0600) and data
    .build/dev/redis-password    the generated Redis password (mode 0600)
    .build/dev/playground.json   pids, ports, phase

Guarantees:

- every listener is on 127.0.0.1 and on a port free at start (no fixed ports; two checkouts, or
  two directories, never collide); the Redis password is never on a command line;
- ``up`` twice says it is already up (exit 0) and starts nothing; ``up`` after a crash cleans
  the dead one's leftovers first; a failed ``up`` keeps the logs and says to run ``down``;
- Redis and the operator are children of a detached supervisor (``supervise``); the operator
  carries its marker (``LOCALKUBE_CLUSTER_ID``, a fresh id) and dies with it, Redis is known by
  pid and start time. ``down`` SIGTERMs the supervisor (which stops the operator, then Redis),
  stops whatever of them is still running (also after the supervisor was killed), runs
  ``localkube down`` on the control plane, and removes the directory. ``down`` is idempotent.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from localkube import cli as localkube_cli
from localkube import paths
from localkube.process import MARKER_ENV, is_ours, start_time, sweep, tail, terminate_pids
from localkube.redis_server import RedisServer

UP_TIMEOUT = 180.0
STATE_FILE = "playground.json"


@dataclass(frozen=True)
class Layout:
    """The files of one playground directory (see the module docstring)."""

    root: Path

    @property
    def cluster(self) -> Path:
        return self.root / "cluster"

    @property
    def kubeconfig(self) -> Path:
        return self.cluster / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def password_file(self) -> Path:
        return self.root / "redis-password"


@dataclass
class PlaygroundState:
    """``playground.json``: written by the supervisor; read by ``up``, ``env``, ``status``,
    ``down``."""

    supervisor_pid: int
    marker: str
    phase: str = "starting"  # starting | ready | failed | stopped
    message: str = ""
    redis_port: int = 0
    redis_pid: int = 0
    redis_started: str = ""  # the kernel's start time of redis_pid (see redis_running)
    operator_pid: int = 0
    liveness_port: int = 0
    metrics_port: int = 0

    def save(self, root: Path) -> None:
        tmp = root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(root / STATE_FILE)

    @classmethod
    def load(cls, root: Path) -> PlaygroundState | None:
        try:
            return cls(**json.loads((root / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def running(self) -> bool:
        return is_ours(self.supervisor_pid, self.marker)

    def redis_running(self) -> bool:
        """redis-server rewrites its process title over its environment, so the marker cannot
        be read back from it: the pid and its start time identify it instead."""
        started = start_time(self.redis_pid) if self.redis_pid else ""
        return bool(started) and started == self.redis_started


def default_root() -> Path:
    return paths.project_root() / ".build" / "dev"


def _say(message: str) -> None:
    print(f"playground: {message}", flush=True)


# -- up --------------------------------------------------------------------------------------


def cmd_up(layout: Layout) -> int:
    state = PlaygroundState.load(layout.root)
    if state is not None and state.running():
        _say(f"already up (in {layout.root}); `make dev-down` stops it")
        print_env(layout, state)
        return 0
    if state is not None or layout.root.exists():  # leftovers of a dead playground
        _stop(layout, state, quiet=True)
    layout.logs.mkdir(parents=True)
    layout.password_file.touch(mode=0o600)
    layout.password_file.write_text(secrets.token_urlsafe(24))

    _say(f"starting the local control plane (state in {layout.cluster})")
    if localkube_cli.cmd_up(layout.cluster, "agent", show_use=False) != 0:
        _say("the control plane did not start; `make dev-down` cleans up")
        return 1
    _say("applying the QueueJob CRD")
    from queuejob_demo import kube as demo_kube  # the kubernetes client: only needed here

    api = demo_kube.api_client(layout.kubeconfig)
    try:
        demo_kube.apply_crd(api)
    finally:
        api.close()  # type: ignore[no-untyped-call]

    _say("starting redis-server and the operator")
    log = layout.logs / "playground.log"
    with log.open("ab") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "queuejob_demo.playground", "supervise", "--dir", layout.root],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, MARKER_ENV: uuid.uuid4().hex},
            start_new_session=True,
        )
    began = time.monotonic()
    while True:
        state = PlaygroundState.load(layout.root)
        if state is not None and state.phase == "ready":
            break
        failed = state is not None and state.phase == "failed"
        if failed or supervisor.poll() is not None or time.monotonic() - began > UP_TIMEOUT:
            _say(f"redis-server or the operator did not start; last lines of {log}:")
            print(tail(log, 30))
            _say("`make dev-down` cleans up")
            return 1
        time.sleep(0.2)
    _say(f"up: Redis on 127.0.0.1:{state.redis_port}, operator pid {state.operator_pid}")
    _say('use it from your shell with:  eval "$(make dev-env)"  (these lines)')
    print_env(layout, state)
    return 0


def supervise(layout: Layout) -> int:
    """The detached owner of Redis and the operator; runs until SIGTERM or SIGINT."""
    from queuejob_demo.stack import OperatorProcess

    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    state = PlaygroundState(supervisor_pid=os.getpid(), marker=os.environ[MARKER_ENV])
    state.save(layout.root)
    password = layout.password_file.read_text().strip()
    redis = RedisServer(
        password=password,
        data_dir=layout.redis,
        extra_config=(f'logfile "{layout.logs / "redis.log"}"',),
    )
    operator: OperatorProcess | None = None
    try:
        redis.start()
        operator = OperatorProcess(
            layout.kubeconfig,
            redis_url=f"redis://127.0.0.1:{redis.port}/0",
            redis_password=password,
            log_file=layout.logs / "operator.log",
        )
        operator.start(ready_timeout=120.0)
    except Exception as exc:
        state.phase, state.message = "failed", f"{type(exc).__name__}: {exc}"
        state.save(layout.root)
        print(f"playground: start failed: {state.message}", flush=True)
        if operator is not None:
            operator.stop()
        redis.stop()
        return 1
    state.phase = "ready"
    state.redis_port, state.redis_pid = redis.port, redis.pid or 0
    state.redis_started = start_time(state.redis_pid)
    state.operator_pid = operator.pid
    state.liveness_port, state.metrics_port = operator.liveness_port, operator.metrics_port
    state.save(layout.root)
    print(f"playground: ready (redis pid {redis.pid}, operator pid {operator.pid})", flush=True)
    reported = False
    while not done.wait(1.0):
        code = operator.component.exit_code()
        if code is not None and not reported:
            reported = True
            state.message = f"the operator exited with code {code}: see logs/operator.log"
            state.save(layout.root)
            print(f"playground: {state.message}", flush=True)
    print("playground: stopping the operator, then redis-server", flush=True)
    operator.stop()
    redis.stop()
    state.phase = "stopped"
    state.save(layout.root)
    return 0


# -- down, env, status -----------------------------------------------------------------------


def _stop(layout: Layout, state: PlaygroundState | None, *, quiet: bool = False) -> list[int]:
    """Stop the supervisor and whatever carries its marker, then the control plane; remove all.

    Returns the pids of processes that were still running after all that (normally none).
    """
    if state is not None:
        if state.running():
            terminate_pids([state.supervisor_pid], grace=30.0)
        leftovers = sweep(state.marker)
        if state.redis_running():  # the supervisor died without stopping it
            terminate_pids([state.redis_pid], grace=10.0)
            leftovers.append(state.redis_pid)
        if leftovers and not quiet:
            _say(f"stopped {len(leftovers)} leftover process(es): {leftovers}")
    if layout.cluster.exists():
        localkube_cli.cmd_down(layout.cluster)
    still = []
    if state is not None:
        still = [p for p in (state.supervisor_pid, state.operator_pid) if is_ours(p, state.marker)]
        still += [state.redis_pid] if state.redis_running() else []
    shutil.rmtree(layout.root, ignore_errors=True)
    return still


def cmd_down(layout: Layout) -> int:
    state = PlaygroundState.load(layout.root)
    if state is None and not layout.root.exists():
        _say("not running")
        return 0
    if state is not None and state.running():
        _say(f"stopping the operator and redis-server (supervisor pid {state.supervisor_pid})")
    still = _stop(layout, state)
    if still:
        _say(f"could not stop {still}")
        return 1
    _say(f"down; removed {layout.root}")
    return 0


def print_env(layout: Layout, state: PlaygroundState | None) -> None:
    """Shell lines for ``eval``: kubectl and the plugin on PATH, KUBECONFIG, the Redis URL and
    password (for ``queuejob seed`` and the like; the password is read from its file when the
    lines are evaluated, so it is never printed); the rest as comments."""
    venv_bin = Path(sys.executable).parent  # kubectl-queuejob, queuejob, localkube
    path = f"{paths.kubectl_binary().parent}:{venv_bin}"
    print(f'export PATH={shlex.quote(path)}:"$PATH"')
    print(f"export KUBECONFIG={shlex.quote(str(layout.kubeconfig))}")
    if state is None or not state.running():
        print("# the playground is not running: start it with `make dev-up`")
        return
    print(f"export QUEUEJOB_REDIS_URL=redis://127.0.0.1:{state.redis_port}/0")
    print(f'export QUEUEJOB_REDIS_PASSWORD="$(cat {shlex.quote(str(layout.password_file))})"')
    print(f"# logs: {layout.logs} (operator, redis, playground); {layout.cluster / 'logs'}")
    print("# stop and remove everything: make dev-down")


def cmd_env(layout: Layout) -> int:
    print_env(layout, PlaygroundState.load(layout.root))
    return 0


def cmd_status(layout: Layout) -> int:
    state = PlaygroundState.load(layout.root)
    if state is None or not state.running():
        _say(f"not running (no live playground in {layout.root})")
        return 1
    healthy = state.phase == "ready"
    for name, pid, up in (
        ("redis-server", state.redis_pid, state.redis_running()),
        ("operator", state.operator_pid, is_ours(state.operator_pid, state.marker)),
    ):
        healthy = healthy and up
        print(f"  {name:<14} pid {pid:<8} {'running' if up else 'DOWN'}")
    if state.message:
        print(f"  {state.message}")
    return 0 if localkube_cli.cmd_status(layout.cluster) == 0 and healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m queuejob_demo.playground",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "env", "status", "supervise"])
    parser.add_argument(
        "--dir", type=Path, default=None, help=f"the playground's directory [{default_root()}]"
    )
    args = parser.parse_args(argv)
    layout = Layout((args.dir or default_root()).absolute())
    try:
        if args.command == "supervise":
            return supervise(layout)
        command = {"up": cmd_up, "down": cmd_down, "env": cmd_env, "status": cmd_status}
        return command[args.command](layout)
    except FileNotFoundError as exc:
        _say(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
