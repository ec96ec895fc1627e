"""Unit tests of ``queuejob.jobs``: the worker Job and Secret built for a QueueJob."""

from __future__ import annotations

import base64
import json
import pathlib
import re
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from op_expansion import kube_expand
from op_strategies import queuejob_name

from queuejob import credentials, jobs, jobstatus, naming, worker
from queuejob.queues import RedisTarget
from queuejob.spec import parse

ROOT = pathlib.Path(__file__).resolve().parents[2]
UID = "6f1c2d3e-0000-4000-8000-000000000001"
BODY = {"metadata": {"name": "crunch", "namespace": "team-a", "uid": UID}}
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _job(spec: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "queue": "qj:team-a:crunch:6f1c2d3e",
        "redis_url": "redis://redis.queuejob-system:6379/0",
        "default_image": "queuejob:dev",
        "image_pull_policy": "IfNotPresent",
        "backoff_limit": 10,
    }
    args.update(overrides)
    return jobs.build_job(BODY, parse(spec), **args)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(job)["env"]}


def test_job_is_owned_by_the_queuejob_and_named_deterministically() -> None:
    job = _job({"items": ["a"]})
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == "crunch-workers" == naming.job_name("crunch")
    assert job["metadata"]["namespace"] == "team-a"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "workqueue.example.com/v1alpha1",
            "kind": "QueueJob",
            "name": "crunch",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert _job({"items": ["a"]}) == job


def test_indexed_job_with_completions_equal_to_parallelism_and_a_per_index_limit() -> None:
    job = _job({"items": ["a"], "parallelism": 7, "suspend": True}, backoff_limit=3)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] == 7
    assert spec["suspend"] is True
    # The operator's backoff limit is per index; one failed index fails the Job; backoffLimit
    # is left to the API's default for per-index Jobs, so it never cuts in first.
    assert spec["backoffLimitPerIndex"] == 3
    assert spec["maxFailedIndexes"] == 0
    assert "backoffLimit" not in spec
    assert _job({"items": ["a"]})["spec"]["suspend"] is False


def test_a_job_created_at_parallelism_zero_gets_one_completion_and_runs_no_pod() -> None:
    spec = _job({"items": ["a"], "parallelism": 0})["spec"]
    # completions 0 would make the Job complete at once, before any item is done
    assert spec["parallelism"] == 0
    assert spec["completions"] == 1
    assert jobs.completions_for(0) == 1
    assert jobs.completions_for(5) == 5


def _existing(parallelism: int, completions: int | None, mode: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"parallelism": parallelism}
    if completions is not None:
        spec["completions"] = completions
    if mode is not None:
        spec["completionMode"] = mode
    return {"spec": spec}


def test_scaling_an_indexed_job_patches_completions_in_tandem_except_to_zero() -> None:
    four = _existing(4, 4, "Indexed")
    assert jobs.is_indexed(four)
    assert jobs.scale_fields(four, 6) == {"parallelism": 6, "completions": 6}
    assert jobs.scale_fields(four, 2) == {"parallelism": 2, "completions": 2}
    assert jobs.scale_fields(four, 4) == {}
    # to 0: completions stay (0 would complete the Job); back up: both again
    assert jobs.scale_fields(four, 0) == {"parallelism": 0}
    paused = _existing(0, 4, "Indexed")
    assert jobs.scale_fields(paused, 0) == {}
    assert jobs.scale_fields(paused, 4) == {"parallelism": 4}
    assert jobs.scale_fields(paused, 3) == {"parallelism": 3, "completions": 3}
    # drift repair of a Job whose completions lag behind (e.g. created at 0 with completions 1)
    assert jobs.scale_fields(_existing(4, 1, "Indexed"), 4) == {"completions": 4}


def test_every_scale_patch_passes_the_apis_tandem_rule() -> None:
    """The API accepts a new completions of an Indexed Job only if it equals the new parallelism
    (pkg/apis/batch/validation validateCompletions); completions must stay > 0 here."""
    for before_p in range(0, 5):
        for before_c in range(1, 5):
            job = _existing(before_p, before_c, "Indexed")
            for target in range(0, 6):
                fields = jobs.scale_fields(job, target)
                after = {**job["spec"], **fields}
                assert after["parallelism"] == target
                if after["completions"] != before_c:
                    assert after["completions"] == after["parallelism"]
                assert after["completions"] >= 1
                if target > 0:
                    assert after["completions"] == target


def test_a_nonindexed_job_of_an_older_operator_is_scaled_by_parallelism_only() -> None:
    # completionMode is immutable and completions of a NonIndexed Job too
    old = _existing(4, None, None)
    assert not jobs.is_indexed(old)
    assert not jobs.is_indexed(None)
    assert jobs.scale_fields(old, 2) == {"parallelism": 2}
    assert jobs.scale_fields(_existing(4, None, "NonIndexed"), 0) == {"parallelism": 0}
    assert jobs.scale_fields(None, 3) == {"parallelism": 3}


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    job = _job({"items": ["a"]})
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = _container(job)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # the read-only root filesystem comes with a writable /tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in _container(job)["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    # nothing that the restricted profile forbids
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    assert all("hostPath" not in v for v in pod["volumes"])


def test_password_comes_from_the_per_queuejob_secret_never_inline() -> None:
    job = _job({"items": ["a"]}, redis_url="redis://r:6379/0")
    env = _env(job)
    assert env["QUEUEJOB_REDIS_PASSWORD"] == {
        "name": "QUEUEJOB_REDIS_PASSWORD",
        "valueFrom": {
            "secretKeyRef": {"name": "crunch-redis", "key": "password", "optional": True}
        },
    }
    assert env["QUEUEJOB_REDIS_URL"]["value"] == "redis://r:6379/0"
    assert env["QUEUEJOB_QUEUE"]["value"] == "qj:team-a:crunch:6f1c2d3e"
    assert env["QUEUEJOB_WORKER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_secret_holds_the_password_and_is_owned_by_the_queuejob() -> None:
    secret = jobs.build_secret(BODY, "pässword")
    assert secret["metadata"]["name"] == naming.secret_name("crunch")
    assert secret["metadata"]["namespace"] == "team-a"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == UID
    assert base64.b64decode(secret["data"]["password"]).decode() == "pässword"
    # the Secret the Job refers to is the one built here
    ref = _env(_job({"items": ["a"]}))["QUEUEJOB_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], "password")
    assert "username" not in secret["data"]  # spec.redis: the owner's password only


def test_secret_of_the_operators_redis_holds_the_queuejobs_own_user() -> None:
    secret = jobs.build_secret(BODY, "per-queue-pw", "wq-worker:qj:team-a:crunch:6f1c2d3e")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"username": "wq-worker:qj:team-a:crunch:6f1c2d3e", "password": "per-queue-pw"}
    ref = _env(_job({"items": ["a"]}))["QUEUEJOB_REDIS_USERNAME"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "username", "optional": True}


def test_worker_spec_sets_image_command_env_and_resources() -> None:
    job = _job(
        {
            "items": ["a"],
            "leaseSeconds": 12,
            "worker": {
                "image": "reg/queuejob:2",
                "command": ["sh", "-c", 'test "$QUEUEJOB_ITEM" != x'],
                "env": [{"name": "EXTRA", "value": "1"}],
                "resources": {"limits": {"memory": "64Mi"}},
            },
        },
        image_pull_policy="Never",
    )
    container = _container(job)
    assert container["image"] == "reg/queuejob:2"
    assert container["imagePullPolicy"] == "Never"
    assert container["command"] == ["queuejob"]
    assert container["args"] == ["worker"]
    assert container["resources"] == {"limits": {"memory": "64Mi"}}
    env = _env(job)
    assert json.loads(_expanded(env["QUEUEJOB_ITEM_COMMAND"]["value"])) == [
        "sh",
        "-c",
        'test "$QUEUEJOB_ITEM" != x',
    ]
    assert env["QUEUEJOB_LEASE_SECONDS"]["value"] == "12"
    assert env["EXTRA"] == {"name": "EXTRA", "value": "1"}


def _expanded(value: str) -> str:
    """``value`` as the container sees it, every ``$(NAME)`` resolvable (the worst case)."""
    return kube_expand(value, lambda name: f"<value of {name}>")


def test_expansion_oracle_follows_the_kubernetes_rules() -> None:
    env = {"Q": "queue-1"}.get

    def expand(value: str) -> str:
        return kube_expand(value, lambda name: env(name) or f"$({name})")

    assert expand("pid=$$ q=$(Q)") == "pid=$ q=queue-1"
    assert expand("$(UNKNOWN) $$(Q) $$$(Q)") == "$(UNKNOWN) $(Q) $queue-1"
    assert expand("$x $ $( $(Q") == "$x $ $( $(Q"
    assert expand("tail$") == "tail$"


#: Command words built from the pieces that Kubernetes' expansion reacts to, quotes, backslashes
#: and any unicode text.
_COMMAND_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["$", "$$", "$(", ")", "$(QUEUEJOB_QUEUE)", "$(X)", "${X}", "'", '"']),
        st.sampled_from(["\\", "`", ";", " ", "ü", "€", "😀", "\\u0024"]),
        st.text(max_size=4),
    ),
    max_size=12,
).map("".join)


@given(st.lists(_COMMAND_TEXT, min_size=1, max_size=5))
def test_item_command_survives_kubernetes_expansion_byte_for_byte(command: list[str]) -> None:
    value = _env(_job({"items": ["a"], "worker": {"command": command}}))["QUEUEJOB_ITEM_COMMAND"]
    expanded = _expanded(value["value"])
    assert json.loads(expanded) == command
    assert [part.encode() for part in json.loads(expanded)] == [p.encode() for p in command]


def test_shell_expansions_in_the_command_are_left_to_the_shell() -> None:
    command = ["sh", "-c", "echo pid=$$ q=$(QUEUEJOB_QUEUE) ${HOME} '$(X)'"]
    value = _env(_job({"items": ["a"], "worker": {"command": command}}))["QUEUEJOB_ITEM_COMMAND"]
    assert "$(QUEUEJOB_QUEUE)" not in value["value"].replace("$$", "")
    assert json.loads(_expanded(value["value"])) == command


def test_without_worker_spec_the_default_image_and_builtin_work_are_used() -> None:
    job = _job({"items": ["a"]}, default_image="localhost/queuejob:7")
    container = _container(job)
    assert container["image"] == "localhost/queuejob:7"
    assert "QUEUEJOB_ITEM_COMMAND" not in _env(job)
    assert "resources" not in container


def _networkpolicy_worker_rules() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "manifests/deploy/networkpolicy.yaml").read_text())
    peers: list[dict[str, Any]] = []
    for doc in docs:
        if doc and doc.get("kind") == "NetworkPolicy":
            for rule in doc["spec"].get("ingress") or []:
                peers.extend(p for p in rule.get("from") or [] if "namespaceSelector" in p)
    return peers


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr["key"], expr["operator"]
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "In" and labels.get(key) not in expr["values"]:
            return False
        if op == "NotIn" and labels.get(key) in expr["values"]:
            return False
    return True


def test_worker_pods_carry_the_labels_the_redis_networkpolicy_admits() -> None:
    peers = _networkpolicy_worker_rules()
    assert peers, "manifests/deploy/networkpolicy.yaml admits no pods of other namespaces"
    pod_labels = _job({"items": ["a"]})["spec"]["template"]["metadata"]["labels"]
    assert any(_selects(p["podSelector"], pod_labels) for p in peers)
    assert pod_labels[naming.QUEUEJOB_LABEL] == "crunch"


@given(queuejob_name)
def test_labels_are_valid_label_values_for_any_queuejob_name(name: str) -> None:
    for key, value in jobs.labels(name).items():
        assert len(value) <= 63, (key, value)
        assert _LABEL_VALUE.match(value), (key, value)


@pytest.mark.parametrize("cut", ["-", "."])
def test_label_of_a_long_name_cut_at_a_separator_stays_valid(cut: str) -> None:
    name = "a" * 62 + cut + "b" * 10
    value = jobs.labels(name)[naming.QUEUEJOB_LABEL]
    assert _LABEL_VALUE.match(value), value
    assert value.startswith("a" * 62)


def test_job_status_readers_accept_a_missing_job_and_see_only_true_conditions() -> None:
    assert jobstatus.active_workers(None) == 0
    assert jobstatus.active_workers({"status": {}}) == 0
    assert jobstatus.active_workers({"status": {"active": 3}}) == 3
    job = {
        "status": {
            "conditions": [
                {"type": "Failed", "status": "False", "reason": "Old"},
                {"type": "Complete", "status": "True", "reason": "Done"},
            ]
        }
    }
    assert jobstatus.true_condition(job, "Failed") is None
    assert jobstatus.true_condition(None, "Failed") is None
    found = jobstatus.true_condition(job, "Complete", "Failed")
    assert found is not None
    assert found["reason"] == "Done"


def _counted(policy: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Whether a failed ``pod`` counts against its index's backoffLimitPerIndex under ``policy``
    (``FailIndex`` would fail the index at once; the policy has none): a model of the Job
    controller's matching (first matching rule wins; no match counts; ``onExitCodes`` looks at
    terminated containers with a non-zero exit code; ``onPodConditions`` at the pod's)."""
    conditions = {(c["type"], c["status"]) for c in pod["status"].get("conditions", [])}
    for rule in policy["rules"]:
        matched = False
        if "onPodConditions" in rule:
            matched = any((p["type"], p["status"]) in conditions for p in rule["onPodConditions"])
        if "onExitCodes" in rule:
            codes = rule["onExitCodes"]
            for status in pod["status"].get("containerStatuses", []):
                code = status["state"].get("terminated", {}).get("exitCode", 0)
                if code == 0 or codes.get("containerName", status["name"]) != status["name"]:
                    continue
                matched |= (code in codes["values"]) == (codes["operator"] == "In")
        if matched:
            return rule["action"] in ("Count", "FailIndex")
    return True


def _failed_pod(exit_code: int, *conditions: str) -> dict[str, Any]:
    return {
        "status": {
            "phase": "Failed",
            "conditions": [{"type": c, "status": "True"} for c in conditions],
            "containerStatuses": [
                {"name": jobs.CONTAINER_NAME, "state": {"terminated": {"exitCode": exit_code}}}
            ],
        }
    }


def test_disruptions_and_graceful_stops_do_not_count_against_the_index_limit() -> None:
    spec = _job({"items": ["a"]})["spec"]
    policy = spec["podFailurePolicy"]
    assert spec["podReplacementPolicy"] == "Failed"  # the only value allowed with the policy
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # required by the policy
    # The worker's exit code after SIGTERM is the one the policy ignores.
    assert jobs.GRACEFUL_EXIT_CODE == worker.EXIT_TERMINATED == 143
    assert not _counted(policy, _failed_pod(143))  # pod deleted: SIGTERM, lease released
    assert not _counted(policy, _failed_pod(137, "DisruptionTarget"))  # evicted, preempted
    assert not _counted(policy, _failed_pod(143, "DisruptionTarget"))
    for crash in (1, 2, 137, 139, 255):  # exceptions, config errors, SIGKILL/OOM, segfaults
        assert _counted(policy, _failed_pod(crash)), crash
    assert _counted(policy, {"status": {"phase": "Failed"}})  # no status at all: counted
    # The API accepts Ignore rules (and FailIndex, unused) beside backoffLimitPerIndex.
    assert {r["action"] for r in policy["rules"]} == {"Ignore"}
    assert spec["backoffLimitPerIndex"] == 10


def test_a_job_of_an_older_operator_is_not_current_on_the_operators_redis() -> None:
    shared = RedisTarget("redis://r:6379/0", "admin", "redis://r:6379/0", shared=True)
    own = RedisTarget("redis://other:6379/0", "theirs", "redis://other:6379/0")
    job = _job({"items": ["a"]})
    assert credentials.job_is_current(job, shared)
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "QUEUEJOB_REDIS_USERNAME"]
    assert not credentials.job_is_current(job, shared)  # its workers log in as default
    assert credentials.job_is_current(job, own)  # spec.redis: the owner's credentials
    assert credentials.job_is_current(None, shared)
