"""Operator settings: environment variables (``QUEUEJOB_*``) overridden by CLI flags.

Every setting has a documented, sane default so that ``queuejob operator`` works with only
``QUEUEJOB_REDIS_URL`` set. :func:`from_env` never raises for a missing variable; a malformed
value raises :class:`SettingsError` naming the variable and the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from workqueue.connect import SCHEMES


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the variable or flag."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One documented setting: its field, environment variable, CLI flag, default and help."""

    field: str
    env: str
    flag: str
    default: str
    help: str


#: The settings table (also the source of docs/settings.md's table and of ``--help``).
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "redis_url",
        "QUEUEJOB_REDIS_URL",
        "--redis-url",
        "redis://127.0.0.1:6379/0",
        "Redis used for queues whose spec has no redis section (may hold the password); "
        "redis+cluster://host:port for a Redis Cluster.",
    ),
    Setting(
        "redis_password",
        "QUEUEJOB_REDIS_PASSWORD",
        "--redis-password",
        "",
        "Password of that Redis (overrides one in the URL); usually from a Secret.",
    ),
    Setting(
        "worker_redis_url",
        "QUEUEJOB_WORKER_REDIS_URL",
        "--worker-redis-url",
        "",
        "Redis URL given to worker pods (default: the operator's URL without password).",
    ),
    Setting(
        "redis_timeout",
        "QUEUEJOB_REDIS_TIMEOUT",
        "--redis-timeout",
        "5",
        "Seconds before a Redis connect or command times out.",
    ),
    Setting(
        "worker_wait_replicas",
        "QUEUEJOB_WORKER_WAIT_REPLICAS",
        "--worker-wait-replicas",
        "0",
        "Workers send WAIT N after each queue call (0: off): acknowledged results survive a "
        "failover; see Guarantees.",
    ),
    Setting(
        "worker_image",
        "QUEUEJOB_WORKER_IMAGE",
        "--worker-image",
        "queuejob:dev",
        "Default worker image (spec.worker.image overrides it).",
    ),
    Setting(
        "worker_image_pull_policy",
        "QUEUEJOB_WORKER_IMAGE_PULL_POLICY",
        "--worker-image-pull-policy",
        "IfNotPresent",
        "imagePullPolicy of worker containers.",
    ),
    Setting(
        "job_backoff_limit",
        "QUEUEJOB_JOB_BACKOFF_LIMIT",
        "--job-backoff-limit",
        "6",
        "backoffLimitPerIndex of worker Jobs (pod failures tolerated per worker index; items "
        "have their own retries).",
    ),
    Setting(
        "namespaces",
        "QUEUEJOB_NAMESPACES",
        "--namespaces",
        "",
        "Comma-separated namespaces (globs allowed) to watch; empty = all namespaces.",
    ),
    Setting(
        "max_concurrent_handlers",
        "QUEUEJOB_MAX_CONCURRENT_HANDLERS",
        "--max-concurrent-handlers",
        "10",
        "Operator-wide limit on handlers running at once (all QueueJobs together).",
    ),
    Setting(
        "api_requests",
        "QUEUEJOB_API_REQUESTS",
        "--api-requests",
        "20",
        "Operator-wide limit on kopf's API requests in flight (watch streams apart); "
        "0 = unlimited.",
    ),
    Setting(
        "handler_qps",
        "QUEUEJOB_HANDLER_QPS",
        "--handler-qps",
        "0",
        "Operator-wide handler starts per second (token bucket); 0 = unlimited.",
    ),
    Setting(
        "handler_burst",
        "QUEUEJOB_HANDLER_BURST",
        "--handler-burst",
        "0",
        "Token-bucket burst for --handler-qps; 0 = ceil(qps).",
    ),
    Setting(
        "backoff_base",
        "QUEUEJOB_BACKOFF_BASE",
        "--backoff-base",
        "1",
        "First retry delay (s) of a failing handler; doubles per retry.",
    ),
    Setting(
        "backoff_cap",
        "QUEUEJOB_BACKOFF_CAP",
        "--backoff-cap",
        "60",
        "Maximum retry delay (s) of a failing handler.",
    ),
    Setting(
        "backoff_jitter",
        "QUEUEJOB_BACKOFF_JITTER",
        "--backoff-jitter",
        "0.2",
        "Relative random jitter (0..1) added to handler retry delays.",
    ),
    Setting(
        "kopf_worker_limit",
        "QUEUEJOB_KOPF_WORKER_LIMIT",
        "--kopf-worker-limit",
        "0",
        "kopf settings.queueing.worker_limit (per-object workers); 0 = unlimited.",
    ),
    Setting(
        "kopf_error_delays",
        "QUEUEJOB_KOPF_ERROR_DELAYS",
        "--kopf-error-delays",
        "1,1,2,3,5,8,13,21,34,55",
        "kopf settings.queueing.error_delays: delays (s) after unexpected watch errors.",
    ),
    Setting(
        "kopf_max_workers",
        "QUEUEJOB_KOPF_MAX_WORKERS",
        "--kopf-max-workers",
        "8",
        "kopf settings.execution.max_workers; also the thread pool for Redis calls.",
    ),
    Setting(
        "status_interval",
        "QUEUEJOB_STATUS_INTERVAL",
        "--status-interval",
        "120",
        "Seconds between resyncs of each QueueJob: status refreshes (reap, counts, phase) that "
        "run without any event, the safety net for lost notifications.",
    ),
    Setting(
        "status_idle_interval",
        "QUEUEJOB_STATUS_IDLE_INTERVAL",
        "--status-idle-interval",
        "600",
        "Longest gap between resyncs of an idle QueueJob (doubling from the status "
        "interval while nothing changes and no lease is out); = status interval: no backoff.",
    ),
    Setting(
        "resync_rate",
        "QUEUEJOB_RESYNC_RATE",
        "--resync-rate",
        "2",
        "Most resyncs per second, operator-wide (resyncs due together wait their turns; with "
        "more idle QueueJobs than this times the idle interval, their gap grows instead, so "
        "the cost stays flat); refreshes for events never wait; 0 = no cap.",
    ),
    Setting(
        "notify_delay",
        "QUEUEJOB_NOTIFY_DELAY",
        "--notify-delay",
        "0.5",
        "Seconds from a change (queue notification, QueueJob or Job event) to the status refresh; "
        "every change of one QueueJob within it gives one refresh.",
    ),
    Setting(
        "config_recheck_interval",
        "QUEUEJOB_CONFIG_RECHECK_INTERVAL",
        "--config-recheck-interval",
        "30",
        "Seconds between re-checks of a QueueJob failed for a missing ConfigMap/Secret (or key).",
    ),
    Setting(
        "node_lost_seconds",
        "QUEUEJOB_NODE_LOST_SECONDS",
        "--node-lost-seconds",
        "20",
        "Whole seconds a node may be NotReady/unreachable before its unfinished worker pods are "
        "marked Failed (DisruptionTarget) and deleted so that their slots are refilled; also the "
        "workers' toleration of those taints; 0 = off (Kubernetes' 300 s defaults).",
    ),
    Setting(
        "liveness_endpoint",
        "QUEUEJOB_LIVENESS",
        "--liveness",
        "http://0.0.0.0:8081/healthz",
        "kopf liveness endpoint; empty = disabled.",
    ),
    Setting(
        "metrics_address",
        "QUEUEJOB_METRICS_ADDRESS",
        "--metrics-address",
        "0.0.0.0",
        "Bind address of the Prometheus /metrics endpoint.",
    ),
    Setting(
        "metrics_port",
        "QUEUEJOB_METRICS_PORT",
        "--metrics-port",
        "8080",
        "Port of the Prometheus /metrics endpoint; 0 = disabled.",
    ),
    Setting(
        "finalizer",
        "QUEUEJOB_FINALIZER",
        "--finalizer",
        "workqueue.example.com/cleanup",
        "Finalizer that guards the removal of a QueueJob's Redis keys.",
    ),
    Setting(
        "leader_elect",
        "QUEUEJOB_LEADER_ELECT",
        "--leader-elect",
        "false",
        "Leader election on a coordination.k8s.io/v1 Lease: wait as a standby, reconcile only "
        "while holding the Lease (bare --leader-elect = true).",
    ),
    Setting(
        "leader_election_namespace",
        "QUEUEJOB_LEADER_ELECTION_NAMESPACE",
        "--leader-election-namespace",
        "queuejob-system",
        "Namespace of the leader-election Lease.",
    ),
    Setting(
        "leader_election_name",
        "QUEUEJOB_LEADER_ELECTION_NAME",
        "--leader-election-name",
        "queuejob-operator",
        "Name of the leader-election Lease.",
    ),
    Setting(
        "leader_election_lease_duration",
        "QUEUEJOB_LEADER_ELECTION_LEASE_DURATION",
        "--leader-election-lease-duration",
        "15",
        "Whole seconds a standby waits after the last renewal it saw before taking the Lease.",
    ),
    Setting(
        "leader_election_renew_deadline",
        "QUEUEJOB_LEADER_ELECTION_RENEW_DEADLINE",
        "--leader-election-renew-deadline",
        "10",
        "Seconds the leader keeps reconciling without a successful renewal; then it exits.",
    ),
    Setting(
        "leader_election_retry_period",
        "QUEUEJOB_LEADER_ELECTION_RETRY_PERIOD",
        "--leader-election-retry-period",
        "2",
        "Seconds between attempts to acquire or renew the Lease (>= 1).",
    ),
)


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """Validated operator settings (see :data:`SETTINGS` for the meaning of each field)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str = ""
    worker_redis_url: str = ""
    redis_timeout: float = 5.0
    worker_wait_replicas: int = 0
    worker_image: str = "queuejob:dev"
    worker_image_pull_policy: str = "IfNotPresent"
    # Per worker index: the Job controller's per-index backoff (10 s doubling) puts a crash-looping
    # worker's 7th counted failure about 10.5 min after its first, as the Job-wide limit did.
    job_backoff_limit: int = 6
    namespaces: tuple[str, ...] = ()
    max_concurrent_handlers: int = 10
    api_requests: int = 20
    handler_qps: float = 0.0
    handler_burst: int = 0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    backoff_jitter: float = 0.2
    kopf_worker_limit: int = 0
    kopf_error_delays: tuple[float, ...] = (1, 1, 2, 3, 5, 8, 13, 21, 34, 55)
    kopf_max_workers: int = 8
    status_interval: float = 120.0
    status_idle_interval: float = 600.0
    resync_rate: float = 2.0
    notify_delay: float = 0.5
    config_recheck_interval: float = 30.0
    node_lost_seconds: int = 20
    liveness_endpoint: str = "http://0.0.0.0:8081/healthz"
    metrics_address: str = "0.0.0.0"
    metrics_port: int = 8080
    finalizer: str = "workqueue.example.com/cleanup"
    leader_elect: bool = False
    leader_election_namespace: str = "queuejob-system"
    leader_election_name: str = "queuejob-operator"
    leader_election_lease_duration: int = 15
    leader_election_renew_deadline: float = 10.0
    leader_election_retry_period: float = 2.0

    @property
    def effective_worker_redis_url(self) -> str:
        """The Redis URL for workers: the explicit setting, or the operator's without password."""
        return self.worker_redis_url or strip_password(self.redis_url)


def strip_password(url: str) -> str:
    """Return ``url`` without userinfo (the password travels separately, via a Secret)."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_FLOATS = frozenset(
    {
        "redis_timeout",
        "handler_qps",
        "backoff_base",
        "backoff_cap",
        "backoff_jitter",
        "status_interval",
        "status_idle_interval",
        "resync_rate",
        "notify_delay",
        "config_recheck_interval",
        "leader_election_renew_deadline",
        "leader_election_retry_period",
    }
)
_INTS = frozenset(
    {
        "job_backoff_limit",
        "worker_wait_replicas",
        "max_concurrent_handlers",
        "api_requests",
        "handler_burst",
        "kopf_worker_limit",
        "kopf_max_workers",
        "node_lost_seconds",
        "metrics_port",
        "leader_election_lease_duration",
    }
)
_BOOLS = frozenset({"leader_elect"})
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _number(name: str, raw: str, kind: type[int] | type[float]) -> float:
    """``raw`` as a finite, non-negative int or float; :class:`SettingsError` names ``name``."""
    try:
        value = kind(raw.strip())
    except ValueError:
        raise SettingsError(
            f"{name}: not a valid value: {raw!r} (expected {kind.__name__})"
        ) from None
    if not math.isfinite(value):
        raise SettingsError(f"{name}: must be a finite number, got {raw!r}")
    if value < 0:
        raise SettingsError(f"{name}: must be >= 0, got {raw!r}")
    return value


def _convert(setting: Setting, raw: str) -> object:
    """Convert the raw text of ``setting`` to the field's type, or raise :class:`SettingsError`."""
    name = setting.env
    if setting.field in _FLOATS:
        return _number(name, raw, float)
    if setting.field in _INTS:
        value = int(_number(name, raw, int))
        if setting.field == "metrics_port" and value > 65535:
            raise SettingsError(f"{name}: must be a port number 0..65535, got {raw!r}")
        return value
    if setting.field in _BOOLS:
        word = raw.strip().lower()
        if word not in _TRUE + _FALSE:
            raise SettingsError(f"{name}: must be true or false, got {raw!r}")
        return word in _TRUE
    if setting.field == "namespaces":
        return tuple(ns.strip() for ns in raw.split(",") if ns.strip())
    if setting.field == "kopf_error_delays":
        return tuple(_number(name, d, float) for d in raw.split(",") if d.strip())
    if setting.field == "worker_image_pull_policy" and raw not in _PULL_POLICIES:
        raise SettingsError(f"{name}: must be one of {', '.join(_PULL_POLICIES)}, got {raw!r}")
    return raw


def _validate(settings: OperatorSettings) -> OperatorSettings:
    if settings.max_concurrent_handlers < 1:
        raise SettingsError("QUEUEJOB_MAX_CONCURRENT_HANDLERS: must be >= 1")
    if settings.backoff_base <= 0:
        raise SettingsError("QUEUEJOB_BACKOFF_BASE: must be > 0")
    if settings.backoff_cap < settings.backoff_base:
        raise SettingsError("QUEUEJOB_BACKOFF_CAP: must be >= QUEUEJOB_BACKOFF_BASE")
    if not 0 <= settings.backoff_jitter <= 1:
        raise SettingsError("QUEUEJOB_BACKOFF_JITTER: must be within 0..1")
    if settings.status_interval <= 0:
        raise SettingsError("QUEUEJOB_STATUS_INTERVAL: must be > 0")
    if settings.status_idle_interval < settings.status_interval:
        raise SettingsError("QUEUEJOB_STATUS_IDLE_INTERVAL: must be >= QUEUEJOB_STATUS_INTERVAL")
    if settings.resync_rate < 0:
        raise SettingsError("QUEUEJOB_RESYNC_RATE: must be >= 0 (0 = no cap)")
    if settings.notify_delay < 0:
        raise SettingsError("QUEUEJOB_NOTIFY_DELAY: must be >= 0")
    if settings.config_recheck_interval <= 0:
        raise SettingsError("QUEUEJOB_CONFIG_RECHECK_INTERVAL: must be > 0")
    if settings.kopf_max_workers < 1:
        raise SettingsError("QUEUEJOB_KOPF_MAX_WORKERS: must be >= 1")
    if urlsplit(settings.redis_url).scheme not in SCHEMES:
        raise SettingsError(
            "QUEUEJOB_REDIS_URL: must be a redis://, rediss://, unix://, redis+cluster:// or "
            "rediss+cluster:// URL"
        )
    if settings.worker_wait_replicas < 0:
        raise SettingsError("QUEUEJOB_WORKER_WAIT_REPLICAS: must be >= 0")
    _validate_election(settings)
    return settings


def _validate_election(settings: OperatorSettings) -> None:
    """The timing rules of client-go (and of ``kubernetes.leaderelection``), checked up front.

    lease duration > renew deadline > 1.2 x retry period, retry period >= 1 s. The first rule is
    what makes a lost leader stop before a standby may take over (see ``queuejob.election``).
    """
    lease = settings.leader_election_lease_duration
    renew = settings.leader_election_renew_deadline
    retry = settings.leader_election_retry_period
    if retry < 1:
        raise SettingsError("QUEUEJOB_LEADER_ELECTION_RETRY_PERIOD: must be >= 1")
    if renew <= 1.2 * retry:
        raise SettingsError(
            "QUEUEJOB_LEADER_ELECTION_RENEW_DEADLINE: must be > 1.2 x "
            "QUEUEJOB_LEADER_ELECTION_RETRY_PERIOD"
        )
    if lease <= renew:
        raise SettingsError(
            "QUEUEJOB_LEADER_ELECTION_LEASE_DURATION: must be > "
            "QUEUEJOB_LEADER_ELECTION_RENEW_DEADLINE"
        )
    for field, env in (
        ("leader_election_namespace", "QUEUEJOB_LEADER_ELECTION_NAMESPACE"),
        ("leader_election_name", "QUEUEJOB_LEADER_ELECTION_NAME"),
    ):
        if not _DNS_LABEL.fullmatch(getattr(settings, field)):
            raise SettingsError(f"{env}: must be a DNS-1123 name, got {getattr(settings, field)!r}")


def from_env(env: Mapping[str, str] | None = None) -> OperatorSettings:
    """Settings from environment variables; unset or empty ones keep their defaults."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is not None and raw != "":
            values[setting.field] = _convert(setting, raw)
    return _validate(OperatorSettings(**values))  # type: ignore[arg-type]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; a flag overrides its environment variable."""
    group = parser.add_argument_group("operator settings (flag overrides env var)")
    for setting in SETTINGS:
        boolean = setting.field in _BOOLS
        group.add_argument(
            setting.flag,
            dest=setting.field,
            default=None,
            metavar="BOOL" if boolean else "VALUE",
            # A boolean flag alone means true (``--leader-elect``); ``--leader-elect=false`` too.
            nargs="?" if boolean else None,
            const="true" if boolean else None,
            help=f"{setting.help} [env {setting.env}, default {setting.default!r}]",
        )


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> OperatorSettings:
    """Settings from the environment, overridden by flags given on the command line."""
    base = from_env(env)
    overrides: dict[str, object] = {}
    for setting in SETTINGS:
        raw = getattr(args, setting.field, None)
        if raw is not None:
            try:
                overrides[setting.field] = _convert(setting, raw)
            except SettingsError as exc:
                raise SettingsError(str(exc).replace(setting.env, setting.flag, 1)) from None
    return _validate(dataclasses.replace(base, **overrides))  # type: ignore[arg-type]


def to_env(settings: OperatorSettings) -> dict[str, str]:
    """The environment that reproduces ``settings`` (used to hand flags over to ``kopf run``)."""
    out: dict[str, str] = {}
    for setting in SETTINGS:
        value = getattr(settings, setting.field)
        if isinstance(value, tuple):
            out[setting.env] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            out[setting.env] = "true" if value else "false"
        else:
            out[setting.env] = str(value)
    return out


def describe(settings: OperatorSettings, secret_fields: Sequence[str] = ("redis_password",)) -> str:
    """A one-line, password-free summary for the startup log."""
    parts = []
    for setting in SETTINGS:
        value = getattr(settings, setting.field)
        if setting.field in secret_fields:
            value = "***" if value else ""
        elif setting.field == "redis_url":
            value = strip_password(str(value))
        parts.append(f"{setting.field}={value}")
    return " ".join(parts)
