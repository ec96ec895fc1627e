"""Manifests the operator writes for a QueueJob: the worker Job and the Redis-password Secret.

Guarantees of :func:`build_job`:

- deterministic name (:func:`queuejob.naming.job_name`) and a controller ownerReference to the
  QueueJob, so the Job and its pods are garbage-collected with it;
- an Indexed Job (:func:`scale_fields`): ``completions`` = ``parallelism`` = spec.parallelism,
  one index per worker slot (a Job created at parallelism 0 gets ``completions`` 1 and runs no
  pod). Workers exit 0 only once the queue is done, so the Job succeeds when every index has
  had a worker exit 0 after the queue was done (an index that never ran starts a worker then,
  which finds the queue done and exits 0); ``suspend`` mirrors the spec;
- disruptions do not count as failures (:func:`pod_failure_policy`): a pod that failed with the
  ``DisruptionTarget`` condition (eviction, preemption, node drain, PodGC) or whose worker
  exited :data:`GRACEFUL_EXIT_CODE` (it was sent SIGTERM, e.g. its pod was deleted, and gave its
  item back) is replaced without being counted; every other failure (a crash, an OOM kill, a
  SIGKILL) counts against ``backoffLimitPerIndex`` (the operator's job backoff limit, per
  index: failures of that worker slot). ``maxFailedIndexes: 0``: once one index has failed more
  often than that, the whole Job fails (reason ``MaxFailedIndexesExceeded``) and so does the
  QueueJob. ``backoffLimit`` is left to the API default for per-index Jobs (2147483647): the
  per-index limit is the only one;
- ``podReplacementPolicy: Failed`` (the only value the API accepts with a ``podFailurePolicy``):
  a replacement starts once the old pod has stopped, never beside it. With
  ``backoffLimitPerIndex`` the Job controller delays a replacement per index only (10 s,
  doubling with each earlier failure of that index, ignored ones included, at most 10 min),
  not by the Job-wide pod-failure backoff, so a worker slot disrupted for the first time is
  refilled after ~10 s however many other workers were disrupted before;
- the pod passes the ``restricted`` Pod Security Standard (non-root uid 10001, seccomp
  RuntimeDefault, all capabilities dropped, no privilege escalation, read-only root filesystem
  with a writable ``/tmp`` emptyDir);
- with ``node_lost_seconds`` > 0 the pod tolerates the ``node.kubernetes.io/unreachable`` and
  ``not-ready`` NoExecute taints for that long instead of the API server's default 300 s (see
  :mod:`queuejob.nodeloss` for what the operator does about pods on a lost node);
- no Redis credential appears in the Job: workers read their user name and password from the
  per-QueueJob Secret (on the operator's Redis a per-QueueJob ACL user, never the operator's
  password: ``queuejob.credentials``);
- ``spec.worker.command`` reaches the worker byte for byte: it travels JSON-encoded in the env
  value ``QUEUEJOB_ITEM_COMMAND`` with every ``$`` written as ``$$`` (:func:`escape_expansion`),
  so Kubernetes' ``$(VAR)``/``$$`` expansion of env values gives back exactly the JSON written.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from queuejob import naming, nodeloss
from queuejob.spec import MAX_PARALLELISM as _SPEC_MAX_PARALLELISM
from queuejob.spec import QueueJobSpec

WORKER_UID = 10001
PASSWORD_KEY = "password"
USERNAME_KEY = "username"
CONTAINER_NAME = "worker"
#: Exit code of a worker stopped by SIGTERM after releasing its lease (``queuejob.worker``).
GRACEFUL_EXIT_CODE = 143
#: Largest spec.parallelism the CRD admits, hence the largest completions of a worker Job.
MAX_PARALLELISM = _SPEC_MAX_PARALLELISM


def escape_expansion(value: str) -> str:
    """``value`` escaped for a container env value or argument: Kubernetes' dependent-variable
    expansion (``$$`` -> ``$``, ``$(VAR)`` -> VAR's value) turns the result back into ``value``.

    Every ``$`` is doubled, so the expansion only ever sees ``$$`` pairs and no ``$(``.
    """
    return value.replace("$", "$$")


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """A controller ownerReference pointing at the QueueJob ``body``."""
    meta = body["metadata"]
    return {
        "apiVersion": f"{naming.GROUP}/{naming.VERSION}",
        "kind": naming.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(queuejob_name: str) -> dict[str, str]:
    """Labels on everything created for one QueueJob.

    The QueueJob label's value is the name cut to 63 characters without a trailing '-' or '.',
    so it is a valid label value for any valid QueueJob name.
    """
    value = queuejob_name[:63].rstrip("-.")
    return {naming.QUEUEJOB_LABEL: value, "app.kubernetes.io/name": "queuejob"}


def _owned_metadata(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Metadata of an object ``name`` made for the QueueJob ``body``.

    Same namespace, the QueueJob labels and a controller ownerReference, so the object is
    garbage-collected with the QueueJob.
    """
    return {
        "name": name,
        "namespace": body["metadata"]["namespace"],
        "labels": labels(body["metadata"]["name"]),
        "ownerReferences": [owner_reference(body)],
    }


def build_secret(
    body: Mapping[str, Any], password: str, username: str | None = None
) -> dict[str, Any]:
    """The per-QueueJob Secret with the workers' Redis credentials, owned by the QueueJob.

    On the operator's Redis: the QueueJob's own ACL user (``username``) and its password, never
    the operator's. With ``spec.redis``: the password its owner supplied, and no user name.
    """
    data = {PASSWORD_KEY: password}
    if username is not None:
        data[USERNAME_KEY] = username
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _owned_metadata(body, naming.secret_name(body["metadata"]["name"])),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _worker_env(
    body: Mapping[str, Any], spec: QueueJobSpec, queue: str, redis_url: str, wait_replicas: int
) -> list[dict[str, Any]]:
    name = body["metadata"]["name"]
    env: list[dict[str, Any]] = [
        {"name": "QUEUEJOB_REDIS_URL", "value": redis_url},
        {
            "name": "QUEUEJOB_REDIS_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {
                    "name": naming.secret_name(name),
                    "key": PASSWORD_KEY,
                    "optional": True,
                }
            },
        },
        {
            "name": "QUEUEJOB_REDIS_USERNAME",
            "valueFrom": {
                "secretKeyRef": {
                    "name": naming.secret_name(name),
                    "key": USERNAME_KEY,
                    "optional": True,
                }
            },
        },
        {"name": "QUEUEJOB_QUEUE", "value": queue},
        {"name": "QUEUEJOB_LEASE_SECONDS", "value": str(spec.lease_seconds)},
        {"name": "QUEUEJOB_WORKER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if wait_replicas:
        env.append({"name": "QUEUEJOB_REDIS_WAIT_REPLICAS", "value": str(wait_replicas)})
    if spec.worker.command is not None:
        env.append(
            {
                "name": "QUEUEJOB_ITEM_COMMAND",
                "value": escape_expansion(json.dumps(list(spec.worker.command))),
            }
        )
    env.extend(dict(e) for e in spec.worker.env)
    return env


def pod_failure_policy() -> dict[str, Any]:
    """The worker Job's ``podFailurePolicy``: disruptions and graceful stops are ignored.

    Rules are matched in order; a failure that matches none counts against the index's
    ``backoffLimitPerIndex``.
    """
    return {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
            {
                "action": "Ignore",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": [GRACEFUL_EXIT_CODE],
                },
            },
        ]
    }


def completions_for(parallelism: int) -> int:
    """The ``completions`` of a worker Job created with ``parallelism`` (0 -> 1, see module doc).

    ``completions`` 0 would complete an Indexed Job at once, before any item is done.
    """
    return max(parallelism, 1)


def is_indexed(job: Mapping[str, Any] | None) -> bool:
    """True for an Indexed worker Job; False for a NonIndexed one (made by an operator before
    Indexed Jobs, ``completionMode`` being immutable) or no Job."""
    return ((job or {}).get("spec") or {}).get("completionMode") == "Indexed"


def scale_fields(job: Mapping[str, Any] | None, parallelism: int) -> dict[str, Any]:
    """The Job spec fields to patch so that the existing ``job`` runs ``parallelism`` workers.

    Indexed: ``completions`` and ``parallelism`` together (the API lets an Indexed Job change
    ``completions`` only to the new ``parallelism``); for 0 only ``parallelism``, keeping
    ``completions`` > 0 so the Job does not complete. NonIndexed (``completions`` unset and
    immutable): ``parallelism`` only. Fields already at their value are left out, so ``{}``
    means nothing to patch.
    """
    spec = (job or {}).get("spec") or {}
    wanted: dict[str, Any] = {"parallelism": parallelism}
    if is_indexed(job) and parallelism > 0:
        wanted["completions"] = parallelism
    return {k: v for k, v in wanted.items() if spec.get(k) != v}


def build_job(
    body: Mapping[str, Any],
    spec: QueueJobSpec,
    *,
    queue: str,
    redis_url: str,
    default_image: str,
    image_pull_policy: str,
    backoff_limit: int,
    wait_replicas: int = 0,
    parallelism: int | None = None,
    node_lost_seconds: int = 0,
) -> dict[str, Any]:
    """The batch/v1 Job running ``queuejob worker`` pods for the QueueJob ``body``.

    ``parallelism`` (default spec.parallelism) is the number of workers to start with; the
    autoscaler passes its own count for a QueueJob with ``spec.autoscaling``.
    ``backoff_limit`` becomes ``backoffLimitPerIndex``: counted failures tolerated per index.
    ``wait_replicas`` becomes the workers' ``QUEUEJOB_REDIS_WAIT_REPLICAS`` (unset when 0).
    ``node_lost_seconds`` (> 0) becomes the ``tolerationSeconds`` of the node-lost taints.
    """
    name = body["metadata"]["name"]
    workers = spec.parallelism if parallelism is None else parallelism
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.worker.image or default_image,
        "imagePullPolicy": image_pull_policy,
        "command": ["queuejob"],
        "args": ["worker"],
        "env": _worker_env(body, spec, queue, redis_url, wait_replicas),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.worker.resources:
        container["resources"] = dict(spec.worker.resources)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if node_lost_seconds > 0:
        pod_spec["tolerations"] = nodeloss.tolerations(node_lost_seconds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _owned_metadata(body, naming.job_name(name)),
        "spec": {
            "completionMode": "Indexed",
            "completions": completions_for(workers),
            "parallelism": workers,
            "backoffLimitPerIndex": backoff_limit,
            "maxFailedIndexes": 0,
            "podFailurePolicy": pod_failure_policy(),
            "podReplacementPolicy": "Failed",
            "suspend": spec.suspend,
            "template": {"metadata": {"labels": labels(name)}, "spec": pod_spec},
        },
    }
