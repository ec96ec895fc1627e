"""Static storage for the real node: a default StorageClass and pre-created hostPath volumes.

Why static volumes and not a dynamic provisioner (kind's rancher local-path-provisioner): that
provisioner is one more Go module to build, pin and test, and a pod of its own on every start;
the real node is a single machine whose only need is that an ordinary PVC (no storageClassName,
like manifests/deploy's ``redis-data``) binds. Guarantees:

- StorageClass :data:`CLASS_NAME` is the cluster's default (``is-default-class``), so claims
  without a class get it from the DefaultStorageClass admission plugin;
- :data:`VOLUME_COUNT` PersistentVolumes of :data:`VOLUME_SIZE` each, ``ReadWriteOnce``, binding
  immediately to any claim of that class that fits; each is a directory under
  ``<state_dir>/volumes/`` created here with mode 0777, because the kubelet applies no ``fsGroup``
  to hostPath volumes and pods run as arbitrary non-root uids (local-path-provisioner does the
  same);
- reclaim policy ``Retain`` (the hostPath deleter only handles /tmp): a released volume keeps its
  data until the cluster's state directory is removed; with :data:`VOLUME_COUNT` volumes a few
  deploy/undeploy cycles per cluster still find free ones, and manifests/redis-cluster's six
  claims fit beside manifests/deploy's one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CLASS_NAME = "local-static"
VOLUME_COUNT = 16
VOLUME_SIZE = "10Gi"


def volume_dir(state_dir: Path, index: int) -> Path:
    """The host directory behind volume ``index``."""
    return state_dir / "volumes" / f"pv-{index}"


def prepare_dirs(state_dir: Path) -> None:
    """Create every volume's directory, writable by any uid (see the module doc)."""
    for index in range(VOLUME_COUNT):
        path = volume_dir(state_dir, index)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)


def manifests(state_dir: Path) -> dict[str, Any]:
    """The StorageClass and the volumes as one ``v1/List`` (for ``kubectl apply``)."""
    storage_class: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": CLASS_NAME,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
    }
    volumes: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"localkube-pv-{index}", "labels": {"localkube/static": "true"}},
            "spec": {
                "capacity": {"storage": VOLUME_SIZE},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": CLASS_NAME,
                "hostPath": {"path": str(volume_dir(state_dir, index)), "type": "Directory"},
            },
        }
        for index in range(VOLUME_COUNT)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": [storage_class, *volumes]}
