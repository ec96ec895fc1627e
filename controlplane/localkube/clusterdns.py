"""Cluster DNS of the real node: CoreDNS (built by build.sh), a Deployment behind ``kube-dns``.

Guarantees:

- the image :func:`image_name` holds only the static ``coredns`` binary and is imported, never
  pulled; the pod runs restricted (non-root 65532, read-only root filesystem, no capabilities,
  seccomp RuntimeDefault), so it listens on :data:`CONTAINER_PORT` and the Service maps 53 to it;
- the Service ``kube-system/kube-dns`` has the fixed ClusterIP :data:`localkube.hostnet.DNS_IP`,
  which the kubelet hands to every ``ClusterFirst`` pod (``clusterDNS``);
- CoreDNS answers ``cluster.local`` (Services, pods) and reverse names from the API server, read
  with its own ServiceAccount limited to list/watch of what the kubernetes plugin needs; there
  is no upstream: other names get SERVFAIL, nothing is sent off this machine.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from localkube import hostnet
from localkube.oci_archive import File, ImageSpec, write_oci_archive

NAMESPACE = "kube-system"
NAME = "coredns"
CONTAINER_PORT = 1053
USER = 65532
COREFILE = f"""\
.:{CONTAINER_PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        pods insecure
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""


def version(binary: Path) -> str:
    """CoreDNS's version, from ``coredns -version`` ("CoreDNS-1.14.7" -> "1.14.7")."""
    out = subprocess.run(
        [str(binary), "-version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[0].removeprefix("CoreDNS-")


def image_name(binary: Path) -> str:
    return f"localhost/localkube/coredns:{version(binary)}"


def write_image(binary: Path, archive: Path) -> str:
    """Write the CoreDNS image archive; return its name."""
    name = image_name(binary)
    spec = ImageSpec(
        name=name,
        files={"/coredns": File(binary.read_bytes(), 0o755)},
        entrypoint=("/coredns",),
        user=f"{USER}:{USER}",
    )
    write_oci_archive(spec, archive)
    return name


def manifests(image: str, dns_ip: str = hostnet.DNS_IP) -> dict[str, Any]:
    """Everything of the cluster DNS as one ``v1/List`` (for ``kubectl apply``); the Service
    gets ``dns_ip``."""
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": labels}
    restricted = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    pod_spec = {
        "serviceAccountName": NAME,
        "priorityClassName": "system-cluster-critical",
        "dnsPolicy": "Default",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER,
            "runAsGroup": USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "containers": [
            {
                "name": "coredns",
                "image": image,
                "imagePullPolicy": "Never",
                "args": ["-conf", "/etc/coredns/Corefile"],
                "ports": [
                    {"name": "dns", "containerPort": CONTAINER_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": CONTAINER_PORT, "protocol": "TCP"},
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/ready", "port": 8181},
                    "periodSeconds": 2,
                },
                "livenessProbe": {
                    "httpGet": {"path": "/health", "port": 8080},
                    "initialDelaySeconds": 10,
                },
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                "securityContext": restricted,
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": NAME}}],
    }
    read = ["list", "watch"]
    items: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "localkube:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "localkube:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "localkube:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "clusterIP": dns_ip,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": CONTAINER_PORT, "protocol": "UDP"},
                    {
                        "name": "dns-tcp",
                        "port": 53,
                        "targetPort": CONTAINER_PORT,
                        "protocol": "TCP",
                    },
                ],
            },
        },
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def deploy(kubectl: list[str], image: str, dns_ip: str = hostnet.DNS_IP) -> None:
    """``kubectl apply`` the manifests; ``kubectl`` is the command line up to the verb."""
    result = subprocess.run(
        [*kubectl, "apply", "-f", "-"],
        input=json.dumps(manifests(image, dns_ip)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"deploying CoreDNS failed: {result.stderr.strip()}")
