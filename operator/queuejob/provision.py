"""Make the worker side of a QueueJob exist: its Redis credentials and the Job, idempotently.

:func:`ensure_workers` creates both if absent, adopts them if present, and patches the Job's
``parallelism`` (with ``completions``, see :func:`queuejob.jobs.scale_fields`) and ``suspend``
when they differ from the spec (e.g. after the operator was down while the spec changed).
With ``spec.autoscaling`` the Job's parallelism belongs to the autoscaler: a new Job starts with
the count :func:`queuejob.autoscaler.recommend` gives for the caller's ``work`` (pending +
leased items), and an existing Job's parallelism is left alone (the refresh timer keeps it).
Calling it any number of times yields the same objects. A Job the API server rejects as invalid
(e.g. bad ``spec.worker.resources``) is a permanent ConfigError.
"""

from __future__ import annotations

import json
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from queuejob import autoscaler, credentials, jobs, jobstatus, kube, naming
from queuejob.errors import ConfigError
from queuejob.queues import RedisTarget
from queuejob.settings import OperatorSettings
from queuejob.spec import QueueJobSpec


async def ensure_workers(
    body: kopf.Body,
    spec: QueueJobSpec,
    *,
    queue: str,
    target: RedisTarget,
    settings: OperatorSettings,
    work: int = 0,
) -> dict[str, Any]:
    """Ensure the Secret and the Job of the QueueJob ``body``; returns the Job as a dict.

    ``work``: the items pending or leased, which sizes a new Job under ``spec.autoscaling``.
    """
    await ensure_secret(body, target, queue, settings)
    return await ensure_job(body, spec, queue=queue, target=target, settings=settings, work=work)


async def ensure_secret(
    body: kopf.Body, target: RedisTarget, queue: str, settings: OperatorSettings
) -> credentials.Ensured:
    """Ensure the workers' Redis credentials: on the operator's Redis the QueueJob's ACL user,
    then the Secret (first half of :func:`ensure_workers`; see :mod:`queuejob.credentials`)."""
    return await credentials.ensure(body, target, queue, settings)


async def ensure_job(
    body: kopf.Body,
    spec: QueueJobSpec,
    *,
    queue: str,
    target: RedisTarget,
    settings: OperatorSettings,
    work: int = 0,
) -> dict[str, Any]:
    """Ensure the QueueJob's Job, its scale and suspend (second half of :func:`ensure_workers`;
    the Secret must exist first). ``work`` as for :func:`ensure_workers`."""
    owner = {"metadata": dict(body["metadata"])}
    manifest = jobs.build_job(
        owner,
        spec,
        queue=queue,
        redis_url=target.worker_url,
        default_image=settings.worker_image,
        image_pull_policy=settings.worker_image_pull_policy,
        backoff_limit=settings.job_backoff_limit,
        wait_replicas=settings.worker_wait_replicas,
        parallelism=autoscaler.workers_for(spec, work),
        node_lost_seconds=settings.node_lost_seconds,
    )
    try:
        job = await kube.ensure_job(manifest)
    except ApiException as exc:
        if exc.status in (400, 422):
            raise ConfigError(
                "JobRejected",
                f"the API server rejected Job {manifest['metadata']['name']}: {_reason(exc)}",
            ) from None
        raise
    current = job.get("spec") or {}
    drift: dict[str, Any] = {}
    if spec.autoscaling is None:
        drift = jobs.scale_fields(job, spec.parallelism)
    if (
        bool(current.get("suspend")) != spec.suspend
        and jobstatus.true_condition(job, "Complete", "Failed") is None
    ):
        drift["suspend"] = spec.suspend
    if drift:
        patched = await kube.patch_job(
            body["metadata"]["namespace"],
            naming.job_name(body["metadata"]["name"]),
            {"spec": drift},
        )
        job = patched if patched is not None else {**job, "spec": {**current, **drift}}
    return job


def _reason(exc: ApiException) -> str:
    """The API server's message of a rejected request (falls back to the HTTP reason)."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)
