"""Unit tests of ``queuejob.settings``: defaults, env parsing, flag precedence, clear errors."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from queuejob import settings as qs
from queuejob.settings import OperatorSettings, SettingsError


def _parse_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    qs.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_empty_environment_gives_the_dataclass_defaults() -> None:
    assert qs.from_env({}) == OperatorSettings()


def test_settings_table_defaults_match_the_dataclass_defaults() -> None:
    """The documented default (README, --help) is what an unset variable really yields."""
    fields = {f.name for f in dataclasses.fields(OperatorSettings)}
    assert {s.field for s in qs.SETTINGS} == fields
    for setting in qs.SETTINGS:
        parsed = qs.from_env({setting.env: setting.default})
        assert getattr(parsed, setting.field) == getattr(OperatorSettings(), setting.field), (
            setting.env
        )


def test_env_values_are_converted_to_their_types() -> None:
    parsed = qs.from_env(
        {
            "QUEUEJOB_REDIS_URL": "redis://:pw@10.0.0.1:6380/2",
            "QUEUEJOB_REDIS_TIMEOUT": "2.5",
            "QUEUEJOB_MAX_CONCURRENT_HANDLERS": "3",
            "QUEUEJOB_NAMESPACES": " a, b* ,,",
            "QUEUEJOB_KOPF_ERROR_DELAYS": "1,2.5",
            "QUEUEJOB_HANDLER_QPS": "",  # empty = default
        }
    )
    assert parsed.redis_url == "redis://:pw@10.0.0.1:6380/2"
    assert parsed.redis_timeout == 2.5
    assert parsed.max_concurrent_handlers == 3
    assert parsed.namespaces == ("a", "b*")
    assert parsed.kopf_error_delays == (1.0, 2.5)
    assert parsed.handler_qps == 0.0


def test_flag_overrides_env_and_env_fills_the_rest() -> None:
    env = {"QUEUEJOB_WORKER_IMAGE": "from-env:1", "QUEUEJOB_STATUS_INTERVAL": "7"}
    parsed = qs.from_args(_parse_flags("--worker-image", "from-flag:2"), env)
    assert parsed.worker_image == "from-flag:2"
    assert parsed.status_interval == 7.0
    assert parsed.finalizer == OperatorSettings().finalizer


@pytest.mark.parametrize(
    ("env", "named", "reason"),
    [
        ({"QUEUEJOB_REDIS_TIMEOUT": "soon"}, "QUEUEJOB_REDIS_TIMEOUT", "not a valid value"),
        ({"QUEUEJOB_REDIS_TIMEOUT": "-1"}, "QUEUEJOB_REDIS_TIMEOUT", ">= 0"),
        ({"QUEUEJOB_STATUS_INTERVAL": "nan"}, "QUEUEJOB_STATUS_INTERVAL", "finite"),
        ({"QUEUEJOB_BACKOFF_CAP": "inf"}, "QUEUEJOB_BACKOFF_CAP", "finite"),
        ({"QUEUEJOB_JOB_BACKOFF_LIMIT": "1.5"}, "QUEUEJOB_JOB_BACKOFF_LIMIT", "not a valid"),
        ({"QUEUEJOB_METRICS_PORT": "-2"}, "QUEUEJOB_METRICS_PORT", ">= 0"),
        ({"QUEUEJOB_METRICS_PORT": "70000"}, "QUEUEJOB_METRICS_PORT", "0..65535"),
        ({"QUEUEJOB_KOPF_ERROR_DELAYS": "1,x"}, "QUEUEJOB_KOPF_ERROR_DELAYS", "not a valid"),
        ({"QUEUEJOB_KOPF_ERROR_DELAYS": "1,-3"}, "QUEUEJOB_KOPF_ERROR_DELAYS", ">= 0"),
        ({"QUEUEJOB_MAX_CONCURRENT_HANDLERS": "0"}, "QUEUEJOB_MAX_CONCURRENT_HANDLERS", ">= 1"),
        ({"QUEUEJOB_BACKOFF_BASE": "0"}, "QUEUEJOB_BACKOFF_BASE", "> 0"),
        (
            {"QUEUEJOB_BACKOFF_BASE": "5", "QUEUEJOB_BACKOFF_CAP": "4"},
            "QUEUEJOB_BACKOFF_CAP",
            ">= QUEUEJOB_BACKOFF_BASE",
        ),
        ({"QUEUEJOB_BACKOFF_JITTER": "2"}, "QUEUEJOB_BACKOFF_JITTER", "0..1"),
        ({"QUEUEJOB_STATUS_INTERVAL": "0"}, "QUEUEJOB_STATUS_INTERVAL", "> 0"),
        ({"QUEUEJOB_KOPF_MAX_WORKERS": "0"}, "QUEUEJOB_KOPF_MAX_WORKERS", ">= 1"),
        ({"QUEUEJOB_NODE_LOST_SECONDS": "-5"}, "QUEUEJOB_NODE_LOST_SECONDS", ">= 0"),
        ({"QUEUEJOB_NODE_LOST_SECONDS": "7.5"}, "QUEUEJOB_NODE_LOST_SECONDS", "not a valid"),
        ({"QUEUEJOB_REDIS_URL": "http://x"}, "QUEUEJOB_REDIS_URL", "redis://"),
        (
            {"QUEUEJOB_WORKER_IMAGE_PULL_POLICY": "Sometimes"},
            "QUEUEJOB_WORKER_IMAGE_PULL_POLICY",
            "IfNotPresent",
        ),
        ({"QUEUEJOB_LEADER_ELECT": "maybe"}, "QUEUEJOB_LEADER_ELECT", "true or false"),
        (
            {"QUEUEJOB_LEADER_ELECTION_LEASE_DURATION": "7.5"},
            "QUEUEJOB_LEADER_ELECTION_LEASE_DURATION",
            "not a valid",
        ),
        (
            {"QUEUEJOB_LEADER_ELECTION_RETRY_PERIOD": "0.5"},
            "QUEUEJOB_LEADER_ELECTION_RETRY_PERIOD",
            ">= 1",
        ),
        (
            {"QUEUEJOB_LEADER_ELECTION_RENEW_DEADLINE": "2.4"},  # not > 1.2 x 2
            "QUEUEJOB_LEADER_ELECTION_RENEW_DEADLINE",
            "> 1.2 x QUEUEJOB_LEADER_ELECTION_RETRY_PERIOD",
        ),
        (
            {"QUEUEJOB_LEADER_ELECTION_LEASE_DURATION": "10"},  # not > the renew deadline 10
            "QUEUEJOB_LEADER_ELECTION_LEASE_DURATION",
            "> QUEUEJOB_LEADER_ELECTION_RENEW_DEADLINE",
        ),
        (
            {"QUEUEJOB_LEADER_ELECTION_NAMESPACE": "Queue_Job"},
            "QUEUEJOB_LEADER_ELECTION_NAMESPACE",
            "DNS-1123",
        ),
    ],
)
def test_invalid_env_values_name_the_variable_and_reason(
    env: dict[str, str], named: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as info:
        qs.from_env(env)
    assert str(info.value).startswith(f"{named}: ")
    assert reason in str(info.value)


def test_invalid_flag_value_names_the_flag_not_the_variable() -> None:
    with pytest.raises(SettingsError) as info:
        qs.from_args(_parse_flags("--redis-timeout", "soon"), {})
    assert str(info.value).startswith("--redis-timeout: ")
    assert "QUEUEJOB_REDIS_TIMEOUT" not in str(info.value)


def test_a_valid_flag_fixes_an_invalid_combination_from_env() -> None:
    env = {"QUEUEJOB_BACKOFF_BASE": "5", "QUEUEJOB_BACKOFF_CAP": "10"}
    with pytest.raises(SettingsError):
        qs.from_args(_parse_flags("--backoff-cap", "4"), env)
    assert qs.from_args(_parse_flags("--backoff-base", "2"), env).backoff_base == 2.0


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ((), {}, False),
        (("--leader-elect",), {}, True),  # a bare flag means true
        (("--leader-elect=false",), {"QUEUEJOB_LEADER_ELECT": "true"}, False),
        ((), {"QUEUEJOB_LEADER_ELECT": "YES"}, True),
        ((), {"QUEUEJOB_LEADER_ELECT": "0"}, False),
    ],
)
def test_leader_elect_is_a_boolean_flag_and_variable(
    argv: tuple[str, ...], env: dict[str, str], expected: bool
) -> None:
    assert qs.from_args(_parse_flags(*argv), env).leader_elect is expected


def test_leader_election_timings_default_to_client_go_and_accept_short_ones() -> None:
    default = OperatorSettings()
    assert (
        default.leader_election_lease_duration,
        default.leader_election_renew_deadline,
        default.leader_election_retry_period,
    ) == (15, 10.0, 2.0)
    short = qs.from_env(
        {
            "QUEUEJOB_LEADER_ELECTION_LEASE_DURATION": "4",
            "QUEUEJOB_LEADER_ELECTION_RENEW_DEADLINE": "3",
            "QUEUEJOB_LEADER_ELECTION_RETRY_PERIOD": "1",
        }
    )
    assert (short.leader_election_lease_duration, short.leader_election_renew_deadline) == (4, 3.0)


def test_to_env_round_trips_through_from_env() -> None:
    custom = dataclasses.replace(
        OperatorSettings(),
        namespaces=("a", "b"),
        kopf_error_delays=(0.5, 2.0),
        metrics_port=0,
        redis_password="s3cret",
        handler_qps=2.5,
        leader_elect=True,
        leader_election_namespace="ops",
        leader_election_lease_duration=20,
    )
    assert qs.from_env(qs.to_env(custom)) == custom


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("redis://:pw@host:6379/0", "redis://host:6379/0"),
        ("redis://user:pw@[::1]:7000/1?x=1", "redis://[::1]:7000/1?x=1"),
        ("rediss://host/0", "rediss://host/0"),
    ],
)
def test_strip_password_removes_userinfo_only(url: str, stripped: str) -> None:
    assert qs.strip_password(url) == stripped


def test_worker_url_defaults_to_the_operator_url_without_password() -> None:
    parsed = qs.from_env({"QUEUEJOB_REDIS_URL": "redis://:pw@h:1/0"})
    assert parsed.effective_worker_redis_url == "redis://h:1/0"
    explicit = qs.from_env(
        {"QUEUEJOB_REDIS_URL": "redis://:pw@h:1/0", "QUEUEJOB_WORKER_REDIS_URL": "redis://w:2/0"}
    )
    assert explicit.effective_worker_redis_url == "redis://w:2/0"


def test_describe_never_shows_a_password() -> None:
    parsed = qs.from_env(
        {"QUEUEJOB_REDIS_URL": "redis://:urlpw@h:1/0", "QUEUEJOB_REDIS_PASSWORD": "envpw"}
    )
    text = qs.describe(parsed)
    assert "urlpw" not in text
    assert "envpw" not in text
    assert "redis_password=***" in text
    assert "redis_url=redis://h:1/0" in text


def test_node_lost_seconds_defaults_to_20_and_0_turns_it_off() -> None:
    """The default leaves room for the goal (a lost slot working again within 60 s of the node
    going NotReady: 20 s + one scan + the Job's 10 s replacement delay + a pod start); 0 is
    accepted and means off (the workers keep Kubernetes' 300 s tolerations)."""
    assert OperatorSettings().node_lost_seconds == 20
    assert qs.from_env({"QUEUEJOB_NODE_LOST_SECONDS": "0"}).node_lost_seconds == 0
    parsed = qs.from_args(_parse_flags("--node-lost-seconds", "8"), {})
    assert parsed.node_lost_seconds == 8
