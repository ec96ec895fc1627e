"""Command lines of the control-plane components (flags follow Kubernetes v1.35).

Design notes (what each choice guarantees):
- everything listens on 127.0.0.1 only; etcd and the API server on free ports picked at start;
  controller-manager and scheduler serve nothing (``--secure-port=0``): their health is watched
  through their processes, and the API server is the only endpoint clients need;
- the API server authorizes with ``Node,RBAC`` and keeps the default admission chain, which
  contains PodSecurity (``--enable-admission-plugins`` is not passed, so nothing is dropped);
- ``--endpoint-reconciler-type=none``: the ``kubernetes`` Service would otherwise get a loopback
  endpoint, which Endpoints validation rejects (log noise, no function lost for local clients);
- the controller-manager runs only the controllers listed in :data:`CONTROLLERS`, each with its
  own service-account credentials. The node-lifecycle controller is left out on purpose: the only
  node is the node agent's, whose health is its process (watched by the launcher); the agent
  posts Lease and Ready heartbeats anyway and clears the not-ready taint itself, so nothing
  depends on that controller and startup doesn't wait for its monitor period.

With a real node (``real_node=True``, :mod:`localkube.realnode`) the API server instead binds and
advertises :data:`localkube.hostnet.NODE_IP`, uses the Service range
:data:`localkube.hostnet.SERVICE_CIDR`, keeps the default (lease) endpoint reconciler so the
``kubernetes`` Service has a reachable endpoint for pods, and adds NodeRestriction admission;
the controller-manager runs upstream's default controller set (``--controllers=*``), with
node-ipam allocating the node's podCIDR out of :data:`localkube.hostnet.POD_CIDR`, node-lifecycle
watching the real kubelet's health and CSR signing by the cluster CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localkube import hostnet
from localkube.certs import Pki

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
ISSUER = "https://kubernetes.default.svc.cluster.local"

CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "replicaset-controller",
    "deployment-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "endpointslice-controller",
    "resourcequota-controller",
    "disruption-controller",
)


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int


def etcd(binary: Path, data_dir: Path, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        "etcd",
        "--name=localkube",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=localkube={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",  # throwaway data: durability buys nothing, fsync costs seconds
        "--log-level=warn",
    ]


def apiserver(
    binary: Path,
    pki: Pki,
    ports: Ports,
    *,
    real_node: bool = False,
    address: str | None = None,
    service_cidr: str | None = None,
) -> list[str]:
    """``address``/``service_cidr`` override the real node's (the multi-node cluster's own)."""
    address = address or (hostnet.NODE_IP if real_node else "127.0.0.1")
    service_cidr = service_cidr or (hostnet.SERVICE_CIDR if real_node else SERVICE_CIDR)
    if real_node:
        node_flags = ["--enable-admission-plugins=NodeRestriction"]
    else:
        node_flags = ["--endpoint-reconciler-type=none"]
    return [
        str(binary),
        "kube-apiserver",
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=Node,RBAC",
        "--anonymous-auth=false",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={service_cidr}",
        *node_flags,
        # `kubectl logs` goes API server -> node agent (its kubelet endpoint), TLS both ways:
        f"--kubelet-client-certificate={pki.clients['apiserver-kubelet-client'].cert}",
        f"--kubelet-client-key={pki.clients['apiserver-kubelet-client'].key}",
        f"--kubelet-certificate-authority={pki.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        "--profiling=false",
    ]


def controller_manager(
    binary: Path,
    pki: Pki,
    kubeconfig: Path,
    *,
    real_node: bool = False,
    multi_node: tuple[str, str] | None = None,
) -> list[str]:
    """``multi_node`` = (cluster CIDR, Service CIDR) of a multi-node cluster, whose Nodes get
    their podCIDR when localkube creates them (the routes between nodes are fixed), so
    node-ipam does not allocate."""
    # The real node gets upstream's default controller set ("*": StatefulSet, DaemonSet,
    # CronJob, PV binding, node-ipam, node-lifecycle, CSR signing with the cluster CA, ...).
    real_node = real_node or multi_node is not None
    controllers = ("*",) if real_node else CONTROLLERS
    if multi_node is not None:
        ipam = ["--allocate-node-cidrs=false", f"--cluster-cidr={multi_node[0]}"]
        service_cidr = multi_node[1]
    else:
        ipam = [
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={hostnet.POD_CIDR}",
            f"--node-cidr-mask-size={hostnet.NODE_CIDR_MASK}",
        ]
        service_cidr = hostnet.SERVICE_CIDR
    node_flags = [
        *ipam,
        f"--service-cluster-ip-range={service_cidr}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
    ]
    return [
        str(binary),
        "kube-controller-manager",
        f"--kubeconfig={kubeconfig}",
        f"--controllers={','.join(controllers)}",
        *(node_flags if real_node else []),
        "--use-service-account-credentials=true",
        f"--root-ca-file={pki.ca.cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        "--leader-elect=false",
        "--secure-port=0",
        "--profiling=false",
    ]


def scheduler(binary: Path, kubeconfig: Path) -> list[str]:
    return [
        str(binary),
        "kube-scheduler",
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
        "--profiling=false",
    ]
