"""The Redis credentials a QueueJob's workers get, in the Secret of the QueueJob's namespace.

On the operator's Redis (no ``spec.redis``) every QueueJob has an ACL user of its own
(:mod:`workqueue.acl`: its queue's keys and channels, the worker's commands); the Secret holds
that user's name and password only. The operator's admin password never leaves the operator.
With ``spec.redis`` the Secret holds the password its owner supplied, as before.

Guarantees:

- :func:`ensure` makes the user (on every node of a cluster) *before* it writes the Secret, and
  both before the caller creates the Job. The password is random and made once; the Secret is
  where it lives, so an operator restart or another replica of the operator reuses it.
- the user name is derived from the queue name, never read from the Secret: a tenant who edits
  the Secret can at most change the password of its own queue's user.
- a Secret that is missing, names another user or holds no password (a Secret made by an older
  operator, which held the admin password) gets a new password: :func:`ensure` reports it as
  ``rewritten`` and the caller moves the running workers onto it (re-creates the Job).
- :func:`resync` re-applies the user on the nodes that lack it (a node restarted without an ACL
  file, a new replica) with the password of the Secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from queuejob import jobs, kube, naming, redisconn
from queuejob.queues import RedisTarget
from queuejob.settings import OperatorSettings
from workqueue import acl
from workqueue.errors import translate

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Ensured:
    """What :func:`ensure` did: the workers' user (None with ``spec.redis``) and whether an
    existing Secret was replaced (its workers must move to the new credentials)."""

    username: str | None
    rewritten: bool


def _admin(target: RedisTarget, settings: OperatorSettings) -> Any:
    return redisconn.client(target.url, target.password, settings.redis_timeout)


async def _acl(client: Any, what: str, call: Callable[[], T]) -> T:
    """``call()`` in a worker thread; redis-py errors become typed ``QueueError``s naming
    ``what`` (``QueueUnavailableError`` while Redis is down: the handler backs off)."""

    def run() -> T:
        with translate(client, what):
            return call()

    return await asyncio.to_thread(run)


def _usable(data: Mapping[str, str] | None, username: str) -> str | None:
    """The password of a Secret made for ``username``, or None if the Secret cannot serve."""
    if data is None or data.get(jobs.USERNAME_KEY) != username:
        return None
    return data.get(jobs.PASSWORD_KEY) or None


async def ensure(
    body: Mapping[str, Any], target: RedisTarget, queue: str, settings: OperatorSettings
) -> Ensured:
    """Ensure the workers' credentials of the QueueJob ``body``: ACL user, then the Secret."""
    owner = {"metadata": dict(body["metadata"])}
    if not target.shared:
        await kube.ensure_secret(jobs.build_secret(owner, target.password or ""))
        return Ensured(None, rewritten=False)
    meta = body["metadata"]
    username = acl.username(queue)
    existing = await kube.read_secret(meta["namespace"], naming.secret_name(meta["name"]))
    password = _usable(existing, username)
    fresh = password is None
    if password is None:
        password = acl.new_password()
    client = _admin(target, settings)
    await _acl(
        client, f"ACL user of queue {queue}", lambda: acl.apply_user(client, queue, password)
    )
    if fresh:
        await kube.ensure_secret(jobs.build_secret(owner, password, username))
    return Ensured(username, rewritten=fresh and existing is not None)


async def resync(
    body: Mapping[str, Any], target: RedisTarget, queue: str, settings: OperatorSettings
) -> list[str] | None:
    """Re-apply the queue's user on the nodes that lack it; the nodes that did (``[]``: none).

    None if the Secret cannot serve (missing or replaced): the caller runs :func:`ensure` and
    moves the workers. No-op (``[]``) with ``spec.redis``.
    """
    if not target.shared:
        return []
    client = _admin(target, settings)
    what = f"ACL user of queue {queue}"
    missing = await _acl(client, what, lambda: acl.missing_nodes(client, queue))
    if not missing:
        return []
    meta = body["metadata"]
    data = await kube.read_secret(meta["namespace"], naming.secret_name(meta["name"]))
    password = _usable(data, acl.username(queue))
    if password is None:
        return None
    await _acl(client, what, lambda: acl.apply_user(client, queue, password))
    return missing


def job_is_current(job: Mapping[str, Any] | None, target: RedisTarget) -> bool:
    """False for a worker Job whose pods would not log in as the QueueJob's user: one made by an
    older operator on the operator's Redis, whose pod template has no
    ``QUEUEJOB_REDIS_USERNAME`` (its workers used the admin password). Pod templates are
    immutable: such a Job is re-created (:func:`queuejob.operate.restart_workers`)."""
    if job is None or not target.shared:
        return True
    pod = (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return any(
        env.get("name") == "QUEUEJOB_REDIS_USERNAME"
        for container in pod.get("containers") or []
        for env in container.get("env") or []
    )
