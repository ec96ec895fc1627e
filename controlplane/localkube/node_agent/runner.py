"""Runs one Pod's containers as local processes and reports its status (one thread per pod).

Guarantees: status goes through the ``status`` subresource (JSON merge patch guarded by the pod's
uid); restartPolicy is honoured; on :meth:`PodRunner.request_stop` every process gets SIGTERM,
then SIGKILL after the grace period, and (unless the Pod object is already gone) the Pod is
finalized by deleting it with ``gracePeriodSeconds=0``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localkube.node_agent.api import Api, ApiError
from localkube.node_agent.env import NODE_IP, EnvError, container_argv, container_env
from localkube.node_agent.node import now
from localkube.podlogs import pod_log_dir

log = logging.getLogger("localkube.node_agent")

BACKOFF_BASE = 1.0
BACKOFF_CAP = 10.0
POLL = 0.1
MANAGED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


@dataclass
class Container:
    """Runtime state of one container of the pod."""

    spec: dict[str, Any]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    done: bool = False  # finished for good (no restart coming)
    restart_at: float | None = None
    started_at: str = ""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> dict[str, Any]:
        running = "running" in self.state
        pid = self.process.pid if self.process else 0
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"localkube://{self.spec.get('image', '')}",
            "containerID": f"localkube://{pid}" if pid else None,
            "ready": running,
            "started": running,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }


def _terminated(code: int, started: str) -> dict[str, Any]:
    if code < 0:  # killed by a signal: report it as a shell would
        code = 128 - code
    reason = "Completed" if code == 0 else "Error"
    return {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": started or now(),
            "finishedAt": now(),
        }
    }


class PodRunner(threading.Thread):
    """Owns the processes of one Pod from start to finalization."""

    def __init__(
        self, api: Api, pod: dict[str, Any], state_dir: Path, on_exit: Callable[[PodRunner], None]
    ) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.api = api
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.policy: str = pod["spec"].get("restartPolicy") or "Always"
        self.workdir = pod_log_dir(state_dir, self.namespace, self.pod_name)
        self.containers = [
            Container(c, self.workdir / f"{c['name']}.log") for c in pod["spec"]["containers"]
        ]
        self._stop = threading.Event()
        self._grace = 30.0
        self._object_gone = False
        self._on_exit = on_exit
        self._start_time = pod.get("status", {}).get("startTime") or now()
        self.phase = "Pending"
        self.finalized = False

    # ------------------------------------------------------------------ requests from the agent
    def request_stop(self, grace: float, object_gone: bool = False) -> None:
        """Stop the pod: SIGTERM now, SIGKILL after ``grace`` s; finalize unless ``object_gone``."""
        grace = max(0.0, grace)
        self._grace = min(self._grace, grace) if self._stop.is_set() else grace
        self._object_gone = self._object_gone or object_gone
        self._stop.set()

    # ------------------------------------------------------------------ thread body
    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s: runner failed", self.namespace, self.pod_name)
            self._kill_all(0)
        finally:
            self._on_exit(self)

    def _run(self) -> None:
        self._prepare_logs()
        envs = self._resolve_envs()
        if envs is None:  # stopped while waiting for config
            self._finalize()
            return
        for container in self.containers:
            self._start(container, envs[container.name])
        self._report()
        while not self._stop.is_set():
            changed = False
            for container in self.containers:
                changed |= self._step(container, envs[container.name])
            if changed:
                self._report()
            if all(c.done for c in self.containers):
                log.info("pod %s/%s finished: %s", self.namespace, self.pod_name, self.phase)
                break
            self._stop.wait(POLL)
        if self._stop.is_set():
            self._kill_all(self._grace)
            self._finalize()

    def _prepare_logs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        marker = self.workdir / ".uid"
        if not marker.exists() or marker.read_text() != self.uid:
            for container in self.containers:
                container.log.write_bytes(b"")
            marker.write_text(self.uid)

    def _resolve_envs(self) -> dict[str, dict[str, str]] | None:
        """Environment of each container; retried while Secrets/ConfigMaps are missing."""
        reported = ""
        while not self._stop.is_set():
            try:
                return {c.name: container_env(self.api, self.pod, c.spec) for c in self.containers}
            except EnvError as exc:
                message = str(exc)
                if message != reported:
                    reported = message
                    log.warning("pod %s/%s: %s", self.namespace, self.pod_name, message)
                    for container in self.containers:
                        container.state = {
                            "waiting": {"reason": "CreateContainerConfigError", "message": message}
                        }
                    self._report()
                    self._event("Warning", "Failed", f"Error: {message}")
            self._stop.wait(1.0)
        return None

    def _start(self, container: Container, env: dict[str, str]) -> None:
        argv = container_argv(container.spec, env)
        workdir = container.spec.get("workingDir")
        cwd = workdir if workdir and os.path.isdir(workdir) else str(self.workdir)
        container.restart_at = None
        try:
            with container.log.open("ab") as out:
                container.process = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            container.process = None
            stamp = now()
            container.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "startedAt": stamp,
                    "finishedAt": stamp,
                    "message": f"cannot run {argv[0]!r}: {exc.strerror or exc}",
                }
            }
            self._event("Warning", "Failed", f"Error: cannot run {argv}: {exc}")
            return
        container.started_at = now()
        container.state = {"running": {"startedAt": container.started_at}}
        log.info(
            "pod %s/%s container %s started: pid %d %s",
            self.namespace,
            self.pod_name,
            container.name,
            container.process.pid,
            argv,
        )

    def _step(self, container: Container, env: dict[str, str]) -> bool:
        """Advance one container; True when its reported state changed."""
        if container.done:
            return False
        if container.restart_at is not None:
            if time.monotonic() >= container.restart_at:
                container.restarts += 1
                self._start(container, env)
                return True
            return False
        if "terminated" not in container.state:
            code = container.process.poll() if container.process else None
            if code is None:
                return False
            container.state = _terminated(code, container.started_at)
        exit_code = int(container.state["terminated"]["exitCode"])
        if self.policy == "Always" or (self.policy == "OnFailure" and exit_code != 0):
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**container.restarts)
            container.last_state = container.state
            container.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": (
                        f"back-off {delay:.0f}s restarting failed container={container.name}"
                    ),
                }
            }
            container.restart_at = time.monotonic() + delay
        else:
            container.done = True
        return True

    def _kill_all(self, grace: float) -> None:
        running = [c for c in self.containers if c.process and c.process.poll() is None]
        for container in running:
            assert container.process is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(container.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(
            c.process and c.process.poll() is None for c in running
        ):
            time.sleep(POLL)
        for container in running:
            assert container.process is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(container.process.pid, signal.SIGKILL)
            code = container.process.wait()
            container.state = _terminated(code, container.started_at)
            container.done = True
        for container in self.containers:
            if not container.done:
                container.done = True
                container.restart_at = None
                if "terminated" not in container.state:
                    container.state = container.last_state or _terminated(137, "")

    # ------------------------------------------------------------------ API side
    def _phase(self) -> str:
        if any("running" in c.state or c.restart_at is not None for c in self.containers):
            return "Running"
        if all(c.done for c in self.containers):
            codes = [int(c.state["terminated"]["exitCode"]) for c in self.containers]
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        return "Pending"

    def _report(self) -> None:
        if self._object_gone:
            return
        self.phase = self._phase()
        stamp = now()
        ready = all("running" in c.state for c in self.containers)
        started = any(c.process is not None for c in self.containers)

        def condition(kind: str, ok: bool, reason: str = "") -> dict[str, Any]:
            entry: dict[str, Any] = {
                "type": kind,
                "status": "True" if ok else "False",
                "lastTransitionTime": stamp,
                "lastProbeTime": None,
            }
            if reason and not ok:
                entry["reason"] = reason
            return entry

        finished = self.phase in ("Succeeded", "Failed")
        not_ready = "PodCompleted" if finished else "ContainersNotReady"
        kept = [
            c
            for c in (self.pod.get("status", {}).get("conditions") or [])
            if c.get("type") not in MANAGED_CONDITIONS
        ]
        status = {
            "phase": self.phase,
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": NODE_IP,
            "podIPs": [{"ip": NODE_IP}],
            "startTime": self._start_time,
            "conditions": [
                *kept,
                condition("PodReadyToStartContainers", started and not finished),
                condition("Initialized", True),
                condition("Ready", ready, not_ready),
                condition("ContainersReady", ready, not_ready),
            ],
            "containerStatuses": [c.status() for c in self.containers],
        }
        try:
            self.pod = self.api.retrying(
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status",
                {"metadata": {"uid": self.uid}, "status": status},
                content_type="application/merge-patch+json",
            )
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or replaced by a pod of another uid
                self._object_gone = True
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.pod_name, exc)

    def _finalize(self) -> None:
        """Report the final state and delete the Pod object for good (grace 0)."""
        self._report()
        if not self._object_gone:
            finalize_pod(self.api, self.namespace, self.pod_name, self.uid)
        self.finalized = True

    def _event(self, kind: str, reason: str, message: str) -> None:
        post_event(self.api, self.pod, kind, reason, message)


def finalize_pod(api: Api, namespace: str, name: str, uid: str) -> None:
    """Delete a Pod with ``gracePeriodSeconds=0`` (only that uid); a missing Pod is fine."""
    body = {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    }
    try:
        api.retrying("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body)
        log.info("pod %s/%s finalized", namespace, name)
    except ApiError as exc:
        if exc.status not in (404, 409):
            log.warning("pod %s/%s: delete failed: %s", namespace, name, exc)


def post_event(api: Api, pod: dict[str, Any], kind: str, reason: str, message: str) -> None:
    """Record a core/v1 Event about ``pod`` (errors are logged, never raised)."""
    meta = pod["metadata"]
    node = pod.get("spec", {}).get("nodeName", "")
    stamp = now()
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "localkube-node-agent", "host": node},
        "reportingComponent": "localkube-node-agent",
        "reportingInstance": node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        api.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body)
    except ApiError as exc:
        log.warning("event for pod %s/%s not recorded: %s", meta["namespace"], meta["name"], exc)
