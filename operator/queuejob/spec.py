"""The QueueJob spec as a typed, validated dataclass.

The CRD schema already rejects most bad input at the API server; :func:`parse` checks the same
rules again (objects may come from an older CRD or an API server without CEL) so that the handlers
work on a trusted value. Every :class:`SpecError` names the offending field (``spec.x.y``) and the
reason.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from workqueue.connect import SCHEMES

MAX_ITEM_LENGTH = 1024
#: Bounds of ``spec.itemsFrom.range`` (as in the CRD schema).
MAX_RANGE_START = 2**31 - 1
MAX_RANGE_COUNT = 10_000_000
#: Most keys in ``spec.itemsFrom.configMapKeyRefs``.
MAX_CONFIGMAP_REFS = 64
#: Bounds of spec.parallelism and spec.autoscaling's min/maxParallelism (as in the CRD).
MAX_PARALLELISM = 100
#: Largest spec.autoscaling.itemsPerWorker and scaleDownStabilizationSeconds (as in the CRD).
MAX_ITEMS_PER_WORKER = 1_000_000
MAX_STABILIZATION_SECONDS = 3600


class SpecError(ValueError):
    """The spec is invalid; ``field`` is its path (e.g. ``spec.retry.maxAttempts``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class KeyRef:
    """A key of an object (ConfigMap or Secret) in the QueueJob's namespace."""

    name: str
    key: str


class ConfigMapKeyRef(KeyRef):
    """Where ``itemsFrom`` reads items: one item per line of a ConfigMap key."""


class SecretKeyRef(KeyRef):
    """A key of a Secret in the QueueJob's namespace."""


@dataclasses.dataclass(frozen=True)
class ItemRange:
    """``itemsFrom.range``: the items are the decimal integers ``start .. start+count-1``."""

    start: int
    count: int

    @property
    def stop(self) -> int:
        """One past the last index."""
        return self.start + self.count


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Per-item retry delays: ``min(cap, base * 2**(attempt-1))`` plus relative jitter."""

    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    jitter: float = 0.2


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """Items per second shared by all workers of one QueueJob (token bucket)."""

    items_per_second: float
    burst: int


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """The worker container: image (None = operator default), per-item command, env, resources."""

    image: str | None = None
    command: tuple[str, ...] | None = None
    env: tuple[Mapping[str, Any], ...] = ()
    resources: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Autoscaling:
    """Worker count from queue depth (see :mod:`queuejob.autoscaler`): between
    ``min_parallelism`` and ``max_parallelism``, one worker per ``items_per_worker`` pending or
    leased items; a lower count takes effect only after ``scale_down_stabilization_seconds``."""

    max_parallelism: int
    min_parallelism: int = 0
    items_per_worker: int = 10
    scale_down_stabilization_seconds: int = 30


@dataclasses.dataclass(frozen=True)
class RedisRef:
    """A QueueJob-specific Redis, instead of the operator's."""

    url: str
    password_secret_ref: SecretKeyRef | None = None


@dataclasses.dataclass(frozen=True)
class QueueJobSpec:
    """A validated QueueJob spec. Exactly one of ``items`` / ``items_from`` /
    ``items_from_many`` / ``items_range`` is set."""

    items: tuple[str, ...] | None
    items_from: ConfigMapKeyRef | None
    items_range: ItemRange | None = None
    items_from_many: tuple[ConfigMapKeyRef, ...] | None = None
    parallelism: int = 1
    worker: WorkerSpec = WorkerSpec()
    lease_seconds: int = 30
    max_attempts: int = 3
    backoff: Backoff = Backoff()
    rate_limit: RateLimit | None = None
    suspend: bool = False
    ttl_seconds_after_finished: int | None = None
    redis: RedisRef | None = None
    autoscaling: Autoscaling | None = None


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(field, f"must be an object, got {type(value).__name__}")
    return value


def _int(value: Any, field: str, default: int, lo: int, hi: int | None = None) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise SpecError(field, f"must be {bounds}, got {value}")
    return value


def _float(value: Any, field: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(field, f"must be a number, got {value!r}")
    return float(value)


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(field, "must be a non-empty string")
    return value


_Ref = TypeVar("_Ref", bound=KeyRef)


def _key_ref(cls: type[_Ref], value: Any, field: str) -> _Ref:
    """A ``{name, key}`` reference at ``field``, both non-empty strings."""
    raw = _mapping(value, field)
    return cls(
        name=_str(raw.get("name"), f"{field}.name"), key=_str(raw.get("key"), f"{field}.key")
    )


def check_items(items: Sequence[Any], field: str) -> tuple[str, ...]:
    """Validate inline items: strings of 1..1024 characters, unique, at least one."""
    if not items:
        raise SpecError(field, "must hold at least one item")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, str) or not 1 <= len(item) <= MAX_ITEM_LENGTH:
            raise SpecError(f"{field}[{i}]", f"must be a string of 1..{MAX_ITEM_LENGTH} characters")
        if item in seen:
            raise SpecError(f"{field}[{i}]", f"duplicate item {item!r}")
        seen.add(item)
    return tuple(items)


def parse_lines(text: str, field: str) -> tuple[tuple[str, ...], int]:
    """Items of an ``itemsFrom`` source: one per line, blank lines ignored, duplicates dropped.

    Returns the unique items in first-seen order and the number of duplicates dropped.
    """
    items: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    for number, line in enumerate(text.splitlines(), start=1):
        item = line.strip()
        if not item:
            continue
        if len(item) > MAX_ITEM_LENGTH:
            raise SpecError(f"{field} line {number}", f"item longer than {MAX_ITEM_LENGTH} chars")
        if item in seen:
            duplicates += 1
            continue
        seen.add(item)
        items.append(item)
    if not items:
        raise SpecError(field, "holds no items")
    return tuple(items), duplicates


def _key_refs(raw: Any, field: str) -> tuple[ConfigMapKeyRef, ...]:
    """A list of 1..64 distinct ``{name, key}`` ConfigMap references."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CONFIGMAP_REFS:
        raise SpecError(field, f"must be a list of 1..{MAX_CONFIGMAP_REFS} {{name, key}} objects")
    refs = tuple(_key_ref(ConfigMapKeyRef, r, f"{field}[{i}]") for i, r in enumerate(raw))
    for i, ref in enumerate(refs):
        if ref in refs[:i]:
            raise SpecError(f"{field}[{i}]", f"duplicate reference {ref.name}/{ref.key}")
    return refs


def _range(raw: Mapping[str, Any]) -> ItemRange:
    if raw.get("count") is None:
        raise SpecError("spec.itemsFrom.range.count", "is required")
    return ItemRange(
        start=_int(raw.get("start"), "spec.itemsFrom.range.start", 0, 0, MAX_RANGE_START),
        count=_int(raw.get("count"), "spec.itemsFrom.range.count", 1, 1, MAX_RANGE_COUNT),
    )


def _worker(raw: Mapping[str, Any]) -> WorkerSpec:
    image = raw.get("image")
    if image is not None:
        image = _str(image, "spec.worker.image")
    command = raw.get("command")
    if command is not None:
        if not isinstance(command, list) or not command:
            raise SpecError("spec.worker.command", "must be a non-empty list of strings")
        if not all(isinstance(part, str) for part in command):
            raise SpecError("spec.worker.command", "must be a list of strings")
        command = tuple(command)
    env = raw.get("env") or []
    if not isinstance(env, list) or not all(
        isinstance(e, Mapping) and isinstance(e.get("name"), str) for e in env
    ):
        raise SpecError("spec.worker.env", "must be a list of EnvVar objects with a name")
    resources = raw.get("resources")
    if resources is not None:
        resources = _mapping(resources, "spec.worker.resources")
    return WorkerSpec(image=image, command=command, env=tuple(env), resources=resources)


def _autoscaling(value: Any) -> Autoscaling | None:
    """``spec.autoscaling``, or None when unset."""
    if value is None:
        return None
    raw = _mapping(value, "spec.autoscaling")
    field = "spec.autoscaling"
    if raw.get("maxParallelism") is None:
        raise SpecError(f"{field}.maxParallelism", "is required")
    high = _int(raw.get("maxParallelism"), f"{field}.maxParallelism", 1, 1, MAX_PARALLELISM)
    low = _int(raw.get("minParallelism"), f"{field}.minParallelism", 0, 0, MAX_PARALLELISM)
    if low > high:
        raise SpecError(f"{field}.minParallelism", f"must be <= maxParallelism ({high}), got {low}")
    return Autoscaling(
        max_parallelism=high,
        min_parallelism=low,
        items_per_worker=_int(
            raw.get("itemsPerWorker"), f"{field}.itemsPerWorker", 10, 1, MAX_ITEMS_PER_WORKER
        ),
        scale_down_stabilization_seconds=_int(
            raw.get("scaleDownStabilizationSeconds"),
            f"{field}.scaleDownStabilizationSeconds",
            30,
            0,
            MAX_STABILIZATION_SECONDS,
        ),
    )


def parse(spec: Mapping[str, Any]) -> QueueJobSpec:
    """Parse and validate a QueueJob's ``spec``; raises :class:`SpecError` naming the field."""
    items_raw = spec.get("items")
    from_raw = spec.get("itemsFrom")
    if (items_raw is None) == (from_raw is None):
        raise SpecError("spec.items", "exactly one of spec.items and spec.itemsFrom must be set")
    items: tuple[str, ...] | None = None
    items_from: ConfigMapKeyRef | None = None
    items_range: ItemRange | None = None
    items_from_many: tuple[ConfigMapKeyRef, ...] | None = None
    if items_raw is not None:
        if not isinstance(items_raw, list):
            raise SpecError("spec.items", "must be a list of strings")
        items = check_items(items_raw, "spec.items")
    else:
        source = _mapping(from_raw, "spec.itemsFrom")
        ref_raw, refs_raw = source.get("configMapKeyRef"), source.get("configMapKeyRefs")
        range_raw = source.get("range")
        if [ref_raw, refs_raw, range_raw].count(None) != 2:
            raise SpecError(
                "spec.itemsFrom",
                "exactly one of spec.itemsFrom.configMapKeyRef, configMapKeyRefs and range "
                "is needed",
            )
        if ref_raw is not None:
            items_from = _key_ref(ConfigMapKeyRef, ref_raw, "spec.itemsFrom.configMapKeyRef")
        elif refs_raw is not None:
            items_from_many = _key_refs(refs_raw, "spec.itemsFrom.configMapKeyRefs")
        else:
            items_range = _range(_mapping(range_raw, "spec.itemsFrom.range"))

    retry = _mapping(spec.get("retry"), "spec.retry")
    backoff_raw = _mapping(retry.get("backoff"), "spec.retry.backoff")
    backoff = Backoff(
        base_seconds=_float(backoff_raw.get("baseSeconds"), "spec.retry.backoff.baseSeconds", 1.0),
        cap_seconds=_float(backoff_raw.get("capSeconds"), "spec.retry.backoff.capSeconds", 60.0),
        jitter=_float(backoff_raw.get("jitter"), "spec.retry.backoff.jitter", 0.2),
    )
    if backoff.base_seconds <= 0:
        raise SpecError("spec.retry.backoff.baseSeconds", "must be > 0")
    if backoff.cap_seconds < backoff.base_seconds:
        raise SpecError("spec.retry.backoff.capSeconds", "must be >= baseSeconds")
    if not 0 <= backoff.jitter <= 1:
        raise SpecError("spec.retry.backoff.jitter", "must be within 0..1")

    rate_limit: RateLimit | None = None
    if spec.get("rateLimit") is not None:
        rl = _mapping(spec.get("rateLimit"), "spec.rateLimit")
        ips = _float(rl.get("itemsPerSecond"), "spec.rateLimit.itemsPerSecond", 0.0)
        if ips <= 0:
            raise SpecError("spec.rateLimit.itemsPerSecond", "must be > 0")
        burst = _int(rl.get("burst"), "spec.rateLimit.burst", max(1, math.ceil(ips)), 1)
        rate_limit = RateLimit(items_per_second=ips, burst=burst)

    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        raise SpecError("spec.suspend", f"must be a boolean, got {suspend!r}")

    ttl_raw = spec.get("ttlSecondsAfterFinished")
    ttl = None if ttl_raw is None else _int(ttl_raw, "spec.ttlSecondsAfterFinished", 0, 0)

    redis: RedisRef | None = None
    if spec.get("redis") is not None:
        r = _mapping(spec.get("redis"), "spec.redis")
        url = _str(r.get("url"), "spec.redis.url")
        if not url.startswith(tuple(f"{scheme}://" for scheme in SCHEMES)):
            raise SpecError(
                "spec.redis.url",
                "must be a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL",
            )
        pw: SecretKeyRef | None = None
        if r.get("passwordSecretRef") is not None:
            pw = _key_ref(SecretKeyRef, r.get("passwordSecretRef"), "spec.redis.passwordSecretRef")
        redis = RedisRef(url=url, password_secret_ref=pw)

    return QueueJobSpec(
        items=items,
        items_from=items_from,
        items_range=items_range,
        items_from_many=items_from_many,
        parallelism=_int(spec.get("parallelism"), "spec.parallelism", 1, 0, MAX_PARALLELISM),
        worker=_worker(_mapping(spec.get("worker"), "spec.worker")),
        lease_seconds=_int(spec.get("leaseSeconds"), "spec.leaseSeconds", 30, 1, 3600),
        max_attempts=_int(retry.get("maxAttempts"), "spec.retry.maxAttempts", 3, 1, 100),
        backoff=backoff,
        rate_limit=rate_limit,
        suspend=suspend,
        ttl_seconds_after_finished=ttl,
        redis=redis,
        autoscaling=_autoscaling(spec.get("autoscaling")),
    )
