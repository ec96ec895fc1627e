"""manifests/deploy runs the operator highly available, and its pieces agree with each other.

Two replicas with leader election, a rolling update that never drops below two, a
PodDisruptionBudget and a preferred anti-affinity that keep one replica through a drain, the
pod's name and namespace from the downward API, and a Lease Role for the very Lease the
Deployment's settings name. (The failover itself: tests/e2e/test_e2e_failover.py; the Role's
permissions: test_mf_rbac.py; the operator on that RBAC with leader election: test_mf_rbac_live.)
"""

from __future__ import annotations

import argparse
from typing import Any

from mf_support import DEPLOY_NS, POD_FIELDS, container_env, operator_container, render_deploy

from queuejob import settings as qs


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_two_replicas_with_leader_election_and_a_surging_rolling_update(cluster: Any) -> None:
    docs = render_deploy(cluster)
    deployment = _one(docs, "Deployment", "queuejob-operator")
    assert deployment["spec"]["replicas"] == 2
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    container = operator_container(docs)
    assert "--leader-elect" in container["args"] and "--standalone" in container["args"]
    # The settings the operator would start with: leader election on, the pod's identity.
    env = container_env(container, {"redis-auth/password": "x"})
    settings = qs.from_env(env)
    assert settings.leader_elect is False  # the flag, not the environment, turns it on ...
    parser = argparse.ArgumentParser()
    qs.add_arguments(parser)
    flags = [a for a in container["args"] if a.startswith("--leader")]
    assert qs.from_args(parser.parse_args(flags), env).leader_elect is True  # ... on
    assert env["POD_NAME"] == POD_FIELDS["metadata.name"]
    assert settings.leader_election_namespace == POD_FIELDS["metadata.namespace"] == DEPLOY_NS


def test_disruption_budget_and_anti_affinity_select_the_operator_pods(cluster: Any) -> None:
    docs = render_deploy(cluster)
    deployment = _one(docs, "Deployment", "queuejob-operator")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = _one(docs, "PodDisruptionBudget", "queuejob-operator")
    assert pdb["metadata"]["namespace"] == DEPLOY_NS
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items(), (selector, pod_labels)
    (term,) = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    anti = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert anti.items() <= pod_labels.items(), (anti, pod_labels)


def test_lease_role_names_the_lease_the_operator_uses(cluster: Any) -> None:
    docs = render_deploy(cluster)
    env = container_env(operator_container(docs), {"redis-auth/password": "x"})
    settings = qs.from_env(env)
    role = _one(docs, "Role", "queuejob-operator-leader-election")
    assert role["metadata"]["namespace"] == settings.leader_election_namespace
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    assert [rule["resourceNames"] for rule in named] == [[settings.leader_election_name]]
    binding = _one(docs, "RoleBinding", "queuejob-operator-leader-election")
    deployment = _one(docs, "Deployment", "queuejob-operator")
    assert (
        binding["subjects"][0]["name"]
        == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    )
