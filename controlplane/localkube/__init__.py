"""localkube: a real Kubernetes control plane as local processes, for development and tests.

Dev/test tooling only. :class:`localkube.cluster.LocalCluster` (Python API, used by the pytest
fixture and the demo) and ``python -m localkube up|down|env|status`` (CLI, ``make cluster-up``)
start etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the project's
``kube-local`` binary on loopback, plus the node agent (:mod:`localkube.node_agent`) that runs
this project's image as local processes.
"""

from localkube.cluster import ComponentDied, LocalCluster

__all__ = ["ComponentDied", "LocalCluster"]
