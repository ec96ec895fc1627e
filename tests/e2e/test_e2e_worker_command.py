"""A per-item command and a QueueJob-specific Redis whose password comes from a Secret."""

from __future__ import annotations

import base64

import pytest

from fixtures.cluster import Cluster
from fixtures.operator import OperatorHandle, queuejob

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

COMMAND = [
    "sh",
    "-c",
    'if [ "$QUEUEJOB_ITEM" = bad ]; then echo "working on $QUEUEJOB_ITEM" >&2; '
    'echo "boom: cannot process $QUEUEJOB_ITEM" >&2; exit 3; fi',
]


def test_item_command_with_own_redis(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    assert operator.redis_password, "the operator's Redis must require a password"
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "my-redis",
        "-n",
        namespace,
        f"--from-literal=secret-password={operator.redis_password}",
    )
    operator.apply(
        queuejob(
            "cmd",
            namespace,
            items=["good-1", "good-2", "bad"],
            parallelism=2,
            retry={"maxAttempts": 1},
            redis={
                "url": operator.pod_redis_url,
                "passwordSecretRef": {"name": "my-redis", "key": "secret-password"},
            },
            worker={"command": COMMAND},
        )
    )
    qj = operator.wait_phase(namespace, "cmd", ("Succeeded", "Failed"), timeout=120)
    status = qj["status"]
    assert status["phase"] == "Failed"
    assert status["counts"]["succeeded"] == 2
    [dead] = status["deadLetters"]
    assert dead == {"item": "bad", "error": "exit code 3: boom: cannot process bad", "attempts": 1}

    # The workers got the password through the operator's per-QueueJob Secret.
    secret = cluster.kubectl_json("get", "secret", "cmd-redis", "-n", namespace)
    assert base64.b64decode(secret["data"]["password"]).decode() == operator.redis_password
    assert secret["metadata"]["ownerReferences"][0]["name"] == "cmd"


def test_missing_password_secret_is_a_config_error(
    operator: OperatorHandle, namespace: str
) -> None:
    operator.apply(
        queuejob(
            "nosecret",
            namespace,
            items=["a"],
            redis={
                "url": operator.pod_redis_url,
                "passwordSecretRef": {"name": "absent", "key": "password"},
            },
        )
    )
    qj = operator.wait_phase(namespace, "nosecret", ("Failed",), timeout=60)
    condition = next(c for c in qj["status"]["conditions"] if c["type"] == "ConfigError")
    assert condition["status"] == "True"
    assert condition["reason"] == "SecretNotFound"
    assert "spec.redis.passwordSecretRef" in condition["message"]


def test_item_command_reaches_the_worker_byte_for_byte(
    operator: OperatorHandle, namespace: str
) -> None:
    # Each argument is printed back between '|' as the command received it; the last stderr line
    # becomes the dead letter's error. QUEUEJOB_QUEUE is defined before QUEUEJOB_ITEM_COMMAND in
    # the container's env, so Kubernetes would replace an unescaped `$(QUEUEJOB_QUEUE)`, and an
    # unescaped `$$` would lose a `$`.
    words = ["pid=$$", "q=$(QUEUEJOB_QUEUE)", "x=$(X)", "$$(X)", "${X} $X", "ü'\"€ \\$"]
    # The script prints a literal 'lit=$$' (single quotes: the shell keeps it), then its arguments.
    script = "printf '%s|' 'lit=$$' \"$@\" >&2; exit 9"
    operator.apply(
        queuejob(
            "verbatim",
            namespace,
            items=["only"],
            retry={"maxAttempts": 1},
            worker={"command": ["sh", "-c", script, "sh", *words]},
        )
    )
    qj = operator.wait_phase(namespace, "verbatim", ("Succeeded", "Failed"), timeout=120)
    [dead] = qj["status"]["deadLetters"]
    assert dead["error"] == "exit code 9: " + "".join(f"{w}|" for w in ["lit=$$", *words])
