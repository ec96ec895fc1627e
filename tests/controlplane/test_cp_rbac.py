"""RBAC is enforced: ``kubectl auth can-i`` for a ServiceAccount, allowed and denied."""

from __future__ import annotations

import pytest

from fixtures.cluster import Cluster

pytestmark = pytest.mark.timeout(120)


def test_cp_auth_can_i_for_a_service_account(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "create", "role", "pod-reader", "-n", namespace, "--verb=get,list,watch", "--resource=pods"
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "reader-reads-pods",
        "-n",
        namespace,
        "--role=pod-reader",
        f"--serviceaccount={namespace}:reader",
    )
    who = f"--as=system:serviceaccount:{namespace}:reader"

    allowed = cluster.kubectl("auth", "can-i", "list", "pods", "-n", namespace, who, check=False)
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes")

    denied = cluster.kubectl("auth", "can-i", "delete", "pods", "-n", namespace, who, check=False)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")

    other_ns = cluster.kubectl("auth", "can-i", "list", "pods", "-n", "default", who, check=False)
    assert other_ns.stdout.strip() == "no", "a Role grants nothing outside its namespace"

    secrets = cluster.kubectl("auth", "can-i", "get", "secrets", "-n", namespace, who, check=False)
    assert secrets.stdout.strip() == "no"
