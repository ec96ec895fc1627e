"""From a QueueJob to its Redis queue: the Redis to use, the queue config, the items.

- :func:`resolve_target`: the spec's own Redis (password from ``spec.redis.passwordSecretRef``)
  or the operator's; also the URL that workers get (never containing the password).
- :func:`queue_config`: the ``workqueue.QueueConfig`` stored in Redis for the workers.
- :func:`load_items`: inline items, the lines of ``spec.itemsFrom``'s ConfigMap key (or keys,
  in order, duplicates across them dropped), or the index range ``spec.itemsFrom.range``
  (never materialized here: Redis generates its items).
- :func:`delete_queue`: remove a queue's keys (on deletion, or ttlSecondsAfterFinished) and, on
  the operator's Redis, the queue's ACL user.

Missing ConfigMaps, Secrets or keys raise :class:`~queuejob.errors.ConfigError` (permanent).
"""

from __future__ import annotations

import asyncio
import dataclasses
from urllib.parse import urlsplit

from queuejob import kube, redisconn
from queuejob.errors import ConfigError
from queuejob.settings import OperatorSettings, strip_password
from queuejob.spec import ItemRange, QueueJobSpec, SpecError, parse_lines
from workqueue import acl
from workqueue.config import QueueConfig
from workqueue.redisqueue import LeaseQueue


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """Where a QueueJob's queue lives, as seen by the operator and by the workers."""

    url: str
    password: str | None
    worker_url: str
    #: The operator's own Redis (no ``spec.redis``): ``password`` is the admin password, which
    #: never leaves the operator; workers get a per-QueueJob ACL user (``queuejob.credentials``).
    shared: bool = False


async def resolve_target(
    spec: QueueJobSpec, namespace: str, settings: OperatorSettings
) -> RedisTarget:
    """The Redis of ``spec`` (or the operator's default); reads the password Secret if any."""
    if spec.redis is None:
        password = settings.redis_password or urlsplit(settings.redis_url).password
        return RedisTarget(
            settings.redis_url, password, settings.effective_worker_redis_url, shared=True
        )
    password = None
    ref = spec.redis.password_secret_ref
    if ref is not None:
        try:
            password = await kube.read_secret_key(namespace, ref.name, ref.key)
        except kube.NotFoundError as exc:
            raise ConfigError("SecretNotFound", f"spec.redis.passwordSecretRef: {exc}") from None
    return RedisTarget(spec.redis.url, password, strip_password(spec.redis.url))


def open_queue(target: RedisTarget, name: str, settings: OperatorSettings) -> LeaseQueue:
    """The LeaseQueue ``name`` on ``target`` (shared, pooled client)."""
    client = redisconn.client(target.url, target.password, settings.redis_timeout)
    return LeaseQueue(client, name)


async def delete_queue(
    spec: QueueJobSpec, namespace: str, name: str, settings: OperatorSettings
) -> int:
    """Delete every Redis key of queue ``name`` on the spec's Redis; the number of keys removed.

    On the operator's Redis the queue's ACL user goes too (on every node; its connections are
    closed by Redis). Raises :class:`~queuejob.errors.ConfigError` if that Redis cannot be
    resolved (see :func:`resolve_target`) and Redis errors if it cannot be reached.
    """
    target = await resolve_target(spec, namespace, settings)
    queue = open_queue(target, name, settings)

    def delete() -> int:
        removed = queue.delete()
        if target.shared:
            acl.remove_user(queue.client, name)
        return removed

    return await asyncio.to_thread(delete)


def queue_config(spec: QueueJobSpec) -> QueueConfig:
    """The queue settings derived from the spec (lease, attempts, item backoff, rate limit)."""
    rate = spec.rate_limit
    return QueueConfig(
        lease_seconds=float(spec.lease_seconds),
        max_attempts=spec.max_attempts,
        backoff_base=spec.backoff.base_seconds,
        backoff_cap=spec.backoff.cap_seconds,
        backoff_jitter=spec.backoff.jitter,
        rate_qps=None if rate is None else rate.items_per_second,
        rate_burst=None if rate is None else rate.burst,
    )


@dataclasses.dataclass(frozen=True)
class Items:
    """What to seed: a list of items (``listed``) or an index range (``range``), and the number
    of duplicate ConfigMap lines dropped."""

    listed: tuple[str, ...] = ()
    range: ItemRange | None = None
    duplicates: int = 0

    @property
    def count(self) -> int:
        """The number of items."""
        return self.range.count if self.range is not None else len(self.listed)


async def load_items(spec: QueueJobSpec, namespace: str) -> Items:
    """The items to seed: inline, from the ConfigMap key (duplicate lines dropped, counted), or
    the index range."""
    if spec.items is not None:
        return Items(listed=spec.items)
    if spec.items_range is not None:
        return Items(range=spec.items_range)
    if spec.items_from is not None:
        refs = [("spec.itemsFrom.configMapKeyRef", spec.items_from)]
    else:
        assert spec.items_from_many is not None
        field = "spec.itemsFrom.configMapKeyRefs"
        refs = [(f"{field}[{i}]", ref) for i, ref in enumerate(spec.items_from_many)]
    listed: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    for field, ref in refs:
        try:
            text = await kube.read_configmap_key(namespace, ref.name, ref.key)
        except kube.NotFoundError as exc:
            raise ConfigError("ConfigMapNotFound", f"{field}: {exc}") from None
        try:
            items, dropped = parse_lines(text, f"{field} (ConfigMap {ref.name}, key {ref.key})")
        except SpecError as exc:
            raise ConfigError("InvalidItems", str(exc)) from None
        duplicates += dropped
        for item in items:
            if item in seen:
                duplicates += 1
            else:
                seen.add(item)
                listed.append(item)
    return Items(listed=tuple(listed), duplicates=duplicates)
