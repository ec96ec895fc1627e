"""The agent's main loop: list + watch the Pods bound to its node and dispatch them."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import requests

from localkube.node_agent.api import Api, ApiError
from localkube.node_agent.images import is_runnable
from localkube.node_agent.node import NodeHeartbeat, now
from localkube.node_agent.runner import PodRunner, finalize_pod, post_event

log = logging.getLogger("localkube.node_agent")

WATCH_SECONDS = 240
SHUTDOWN_GRACE = 5.0


class NodeAgent:
    """Registers the node and runs its pods until :meth:`shutdown`."""

    def __init__(self, api: Api, node_name: str, state_dir: Path, kubelet_port: int = 0) -> None:
        self.api = api
        self.node_name = node_name
        self.state_dir = state_dir
        self.heartbeat = NodeHeartbeat(api, node_name, kubelet_port, str(state_dir))
        self._lock = threading.Lock()
        self._runners: dict[str, PodRunner] = {}
        self._finished: set[str] = set()  # uids whose containers are done for good
        self._deleting: set[str] = set()  # uids with a deletionTimestamp
        self._finalized: set[str] = set()
        self._rejected: set[str] = set()  # uids with an image we cannot run
        self._shutdown = threading.Event()

    # ----------------------------------------------------------------------------- main loop
    def run(self) -> None:
        """Register, then list/watch pods until shutdown (reconnects on any stream error)."""
        while not self._shutdown.is_set():
            try:
                self.heartbeat.register()
                break
            except (ApiError, requests.RequestException) as exc:
                log.warning("node registration failed, retrying: %s", exc)
                self._shutdown.wait(1.0)
        self.heartbeat.start()
        log.info("node %s Ready; watching its pods", self.node_name)
        path = "/api/v1/pods"
        selector = {"fieldSelector": f"spec.nodeName={self.node_name}"}
        while not self._shutdown.is_set():
            try:
                listing = self.api.get(path, selector)
                for pod in listing.get("items", []):
                    self.handle("ADDED", pod)
                version = listing["metadata"]["resourceVersion"]
                while not self._shutdown.is_set():
                    params = {
                        **selector,
                        "resourceVersion": version,
                        "timeoutSeconds": str(WATCH_SECONDS),
                    }
                    for event in self.api.watch(path, params, timeout=WATCH_SECONDS + 30):
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            raise ApiError(int(obj.get("code", 500)), str(obj.get("message")))
                        version = obj["metadata"]["resourceVersion"]
                        if kind != "BOOKMARK":
                            self.handle(kind, obj)
                        if self._shutdown.is_set():
                            break
            except (ApiError, requests.RequestException, ValueError) as exc:
                if not self._shutdown.is_set():
                    log.info("pod watch restarting: %s", exc)
                    self._shutdown.wait(0.5)

    def handle(self, kind: str, pod: dict[str, Any]) -> None:
        """React to one pod event (idempotent: events may repeat after a relist)."""
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            runner = self._runners.get(uid)
            if kind == "DELETED":
                if runner is not None:
                    runner.request_stop(0.0, object_gone=True)
                self._forget(uid)
                return
            if meta.get("deletionTimestamp"):
                self._deleting.add(uid)
                if runner is not None:
                    runner.request_stop(float(meta.get("deletionGracePeriodSeconds") or 0))
                elif uid not in self._finalized:
                    self._finalized.add(uid)
                    threading.Thread(
                        target=finalize_pod,
                        daemon=True,
                        args=(self.api, meta["namespace"], meta["name"], uid),
                    ).start()
                return
            phase = pod.get("status", {}).get("phase")
            if runner is not None or uid in self._finished or phase in ("Succeeded", "Failed"):
                return
            images = [c.get("image") for c in pod["spec"]["containers"]]
            images += [c.get("image") for c in pod["spec"].get("initContainers") or []]
            unsupported = [i for i in images if not is_runnable(i)]
            if pod["spec"].get("initContainers"):
                unsupported.append("(initContainers are not supported)")
            if unsupported:
                if uid not in self._rejected:
                    self._rejected.add(uid)
                    threading.Thread(
                        target=self._reject, args=(pod, unsupported), daemon=True
                    ).start()
                return
            if self._shutdown.is_set():
                return
            runner = PodRunner(self.api, pod, self.state_dir, self._runner_exited)
            self._runners[uid] = runner
            runner.start()

    def is_active(self, namespace: str, pod: str) -> bool:
        """True while a runner owns processes of ``namespace/pod``."""
        with self._lock:
            return any(
                r.namespace == namespace and r.pod_name == pod for r in self._runners.values()
            )

    def _forget(self, uid: str) -> None:
        for bucket in (self._finished, self._deleting, self._finalized, self._rejected):
            bucket.discard(uid)

    def _runner_exited(self, runner: PodRunner) -> None:
        with self._lock:
            self._runners.pop(runner.uid, None)
            self._finished.add(runner.uid)
            finalize = (
                runner.uid in self._deleting
                and not runner.finalized
                and runner.uid not in self._finalized
                and not self._shutdown.is_set()
            )
            if finalize:
                self._finalized.add(runner.uid)
        if finalize:
            finalize_pod(self.api, runner.namespace, runner.pod_name, runner.uid)

    def _reject(self, pod: dict[str, Any], unsupported: list[str]) -> None:
        """Leave the pod Pending with a waiting reason and a Warning Event that say why."""
        message = (
            f"the localkube node agent (dev/test only) runs only this project's image "
            f"(repository 'queuejob') as local processes; unsupported: {', '.join(unsupported)}"
        )
        meta = pod["metadata"]
        log.info("pod %s/%s left Pending: %s", meta["namespace"], meta["name"], message)
        post_event(self.api, pod, "Warning", "UnsupportedImage", message)
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "UnsupportedImage", "message": message}},
            }
            for c in pod["spec"]["containers"]
        ]
        try:
            self.api.merge_patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {
                    "metadata": {"uid": meta["uid"]},
                    "status": {
                        "phase": "Pending",
                        "hostIP": "127.0.0.1",
                        "startTime": now(),
                        "containerStatuses": statuses,
                    },
                },
            )
        except ApiError as exc:
            log.warning("pod %s/%s: status update failed: %s", meta["namespace"], meta["name"], exc)

    # ----------------------------------------------------------------------------- shutdown
    def shutdown(self) -> None:
        """Stop the watch and every pod process (SIGTERM, SIGKILL after a short grace)."""
        self._shutdown.set()
        self.heartbeat.stop()
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.request_stop(SHUTDOWN_GRACE, object_gone=True)
        deadline = time.monotonic() + SHUTDOWN_GRACE + 2
        for runner in runners:
            runner.join(max(0.0, deadline - time.monotonic()))
