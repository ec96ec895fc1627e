"""Configuration and command lines of the real node's kubelet and kube-proxy (Kubernetes v1.35).

Kubelet (``KubeletConfiguration`` v1beta1), what each choice guarantees:

- it serves its API only on :data:`localkube.hostnet.NODE_IP` at a free port, with TLS from the
  cluster CA; no read-only port, no healthz port. Clients authenticate with x509 (the API
  server's ``kube-apiserver-kubelet-client`` certificate) or a bearer token (webhook
  TokenReview); anonymous requests are refused; every request is authorized by the API server
  (webhook SubjectAccessReview);
- its own client identity is ``system:node:<name>`` in ``system:nodes``: the Node authorizer
  plus NodeRestriction admission limit it to its own Node and the pods bound to it;
- cgroup v1 is accepted (``failCgroupV1: false``): Kubernetes 1.35's kubelet refuses to start on
  cgroup v1 otherwise, and this project's machines may be cgroup v1 hybrids. Driver ``cgroupfs``
  (no systemd here), as containerd's runc runtime is configured;
- ``failSwapOn: false``: a developer machine may have swap; the kubelet then runs pods with
  ``NoSwap`` (the default swap behavior), i.e. pods never use swap;
- eviction and image GC thresholds are set so that a full developer disk never evicts a test pod
  or deletes the locally imported (never pullable) images;
- pod logs, volumes and checkpoints stay under the cluster's state directory.

kube-proxy (``KubeProxyConfiguration`` v1alpha1): iptables mode, node ports only on the node
IP, health and metrics on free loopback ports, and it leaves the host's conntrack limits and
timeouts as they are (``maxPerCore: 0``, timeouts ``0s``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localkube import hostnet


def kubelet_config(
    *,
    port: int,
    ca_cert: Path,
    serving: tuple[Path, Path],
    runtime_endpoint: str,
    pod_logs_dir: Path,
    cluster_dns: list[str] | None = None,
    address: str = hostnet.NODE_IP,
    cgroup_root: str | None = None,
) -> dict[str, Any]:
    """The kubelet's ``KubeletConfiguration`` (see the module doc for what it guarantees).

    ``address`` is where it serves (the node IP); ``cgroup_root`` gives it a cgroup tree of its
    own (its ``kubepods`` goes below it), for several kubelets on one machine."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "containerRuntimeEndpoint": runtime_endpoint,
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDomain": "cluster.local",
        "clusterDNS": cluster_dns or [],
        # No resolver from the host's resolv.conf: it may be off this machine, where pods must
        # never send (see localkube.hostnet). Cluster DNS, once there, sets clusterDNS instead.
        "resolvConf": "",
        "podLogsDir": str(pod_logs_dir),
        "registerNode": True,
        "maxPods": 110,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "staticPodPath": "",
        "logging": {"format": "text"},
        "shutdownGracePeriod": "0s",
        # No KUBE-FIREWALL/canary chains: kube-proxy owns the Service rules, and localhost node
        # ports (what KUBE-FIREWALL guards) are off.
        "makeIPTablesUtilChains": False,
        # Upstream's -999 needs CAP_SYS_RESOURCE (see localkube.containerd); 0 = unchanged.
        "oomScoreAdj": 0,
    }
    if cgroup_root is not None:
        config["cgroupRoot"] = cgroup_root
    return config


def kubelet_argv(
    binary: Path,
    *,
    config: Path,
    kubeconfig: Path,
    root_dir: Path,
    node_name: str,
    node_ip: str = hostnet.NODE_IP,
) -> list[str]:
    return [
        str(binary),
        "kubelet",
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={root_dir}",
        f"--cert-dir={root_dir / 'pki'}",
        f"--hostname-override={node_name}",
        f"--node-ip={node_ip}",
        "--v=1",
    ]


def kube_proxy_config(
    *,
    kubeconfig: Path,
    node_name: str,
    healthz_port: int,
    metrics_port: int,
    node_ip: str = hostnet.NODE_IP,
    cluster_cidr: str = hostnet.POD_CIDR,
    healthz_address: str = "127.0.0.1",
) -> dict[str, Any]:
    """kube-proxy's ``KubeProxyConfiguration`` (see the module doc)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "bindAddress": node_ip,
        "clusterCIDR": cluster_cidr,
        "healthzBindAddress": f"{healthz_address}:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{node_ip}/32"],
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "1s"},
        "oomScoreAdj": 0,  # as the kubelet's, see kubelet_config
    }


def kube_proxy_argv(binary: Path, *, config: Path) -> list[str]:
    return [str(binary), "kube-proxy", f"--config={config}", "--v=1"]


def kube_proxy_cleanup_argv(binary: Path) -> list[str]:
    """kube-proxy's own teardown of every rule it may have written (iptables, ipvs, nftables)."""
    return [str(binary), "kube-proxy", "--cleanup", "--v=0"]


def write_json(path: Path, value: dict[str, Any]) -> Path:
    """Write a config file (JSON is YAML, which both components read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")
    return path
