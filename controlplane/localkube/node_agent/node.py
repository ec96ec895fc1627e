"""The agent's Node: registration, readiness, Lease and status heartbeats."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import threading
from typing import Any

from localkube.node_agent.api import Api, ApiError

log = logging.getLogger("localkube.node_agent")

LEASE_SECONDS = 40
LEASE_RENEW_EVERY = 10.0
STATUS_EVERY = 30.0
NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
CAPACITY = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"}
AGENT_VERSION = "v1.35.4-localkube"


def now() -> str:
    """RFC 3339 timestamp (seconds), as Kubernetes' metav1.Time serializes."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    """RFC 3339 with microseconds, as metav1.MicroTime serializes."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeHeartbeat:
    """Registers the node, keeps it Ready and untainted, renews its Lease until stopped."""

    def __init__(self, api: Api, name: str, kubelet_port: int = 0, state_dir: str = "") -> None:
        self.api = api
        self.name = name
        self.kubelet_port = kubelet_port
        self.state_dir = state_dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="node-heartbeat", daemon=True)

    def _conditions(self) -> list[dict[str, Any]]:
        stamp = now()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }

        return [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no pressure"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "no pressure"),
            condition("Ready", "True", "KubeletReady", "localkube node agent is posting status"),
        ]

    def _status(self) -> dict[str, Any]:
        return {
            "capacity": CAPACITY,
            "allocatable": CAPACITY,
            "conditions": self._conditions(),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "localkube node agent (dev only)",
                "containerRuntimeVersion": "localkube://process",
                "kubeletVersion": AGENT_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register(self) -> None:
        """Create the Node (or adopt an existing one), post Ready status, clear not-ready taints."""
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "localkube.dev/node-agent": "true",
                },
                # where the agent keeps pod logs (see localkube.podlogs), for tools on this host
                "annotations": {"localkube.dev/state-dir": self.state_dir},
            },
        }
        try:
            self.api.request("POST", "/api/v1/nodes", body)
            log.info("registered node %s", self.name)
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.post_status()
        self.renew_lease()

    def post_status(self) -> None:
        self.api.merge_patch(f"/api/v1/nodes/{self.name}/status", {"status": self._status()})
        node = self.api.get(f"/api/v1/nodes/{self.name}")
        taints = node.get("spec", {}).get("taints") or []
        kept = [t for t in taints if t.get("key") not in NOT_READY_TAINTS]
        if len(kept) != len(taints):
            self.api.merge_patch(f"/api/v1/nodes/{self.name}", {"spec": {"taints": kept or None}})

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_now(),
        }
        try:
            self.api.merge_patch(path, {"spec": spec})
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.api.request(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {"metadata": {"name": self.name, "namespace": "kube-node-lease"}, "spec": spec},
            )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        since_status = 0.0
        while not self._stop.wait(LEASE_RENEW_EVERY):
            since_status += LEASE_RENEW_EVERY
            try:
                self.renew_lease()
                if since_status >= STATUS_EVERY:
                    since_status = 0.0
                    self.post_status()
            except Exception as exc:  # keep beating; the next round retries
                log.warning("node heartbeat failed: %s", exc)
