"""Unit tests of ``queuejob.spec``: defaults, field-named errors, itemsFrom line parsing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuejob.spec import (
    MAX_ITEM_LENGTH,
    Backoff,
    ConfigMapKeyRef,
    ItemRange,
    QueueJobSpec,
    RateLimit,
    SecretKeyRef,
    SpecError,
    WorkerSpec,
    check_items,
    parse,
    parse_lines,
)


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse({"items": ["a", "b"]})
    assert spec == QueueJobSpec(
        items=("a", "b"),
        items_from=None,
        parallelism=1,
        worker=WorkerSpec(),
        lease_seconds=30,
        max_attempts=3,
        backoff=Backoff(1.0, 60.0, 0.2),
        rate_limit=None,
        suspend=False,
        ttl_seconds_after_finished=None,
        redis=None,
    )


def test_full_spec_is_parsed_field_by_field() -> None:
    spec = parse(
        {
            "itemsFrom": {"configMapKeyRef": {"name": "cm", "key": "items"}},
            "parallelism": 0,
            "worker": {
                "image": "reg/queuejob:1",
                "command": ["sh", "-c", "echo $QUEUEJOB_ITEM"],
                "env": [{"name": "A", "value": "1"}],
                "resources": {"limits": {"cpu": "1"}},
            },
            "leaseSeconds": 3600,
            "retry": {"maxAttempts": 100, "backoff": {"baseSeconds": 0.5, "capSeconds": 2}},
            "rateLimit": {"itemsPerSecond": 2.5},
            "suspend": True,
            "ttlSecondsAfterFinished": 0,
            "redis": {
                "url": "rediss://r:6380/1",
                "passwordSecretRef": {"name": "s", "key": "pw"},
            },
        }
    )
    assert spec.items is None
    assert spec.items_from == ConfigMapKeyRef("cm", "items")
    assert spec.parallelism == 0
    assert spec.worker.image == "reg/queuejob:1"
    assert spec.worker.command == ("sh", "-c", "echo $QUEUEJOB_ITEM")
    assert spec.worker.env == ({"name": "A", "value": "1"},)
    assert spec.worker.resources == {"limits": {"cpu": "1"}}
    assert spec.lease_seconds == 3600
    assert spec.max_attempts == 100
    assert spec.backoff == Backoff(0.5, 2.0, 0.2)
    # burst defaults to ceil(itemsPerSecond)
    assert spec.rate_limit == RateLimit(2.5, 3)
    assert spec.suspend is True
    assert spec.ttl_seconds_after_finished == 0
    assert spec.redis is not None
    assert spec.redis.url == "rediss://r:6380/1"
    assert spec.redis.password_secret_ref == SecretKeyRef("s", "pw")


def test_rate_limit_below_one_per_second_gets_burst_one_and_explicit_burst_wins() -> None:
    assert parse({"items": ["a"], "rateLimit": {"itemsPerSecond": 0.2}}).rate_limit == RateLimit(
        0.2, 1
    )
    explicit = parse({"items": ["a"], "rateLimit": {"itemsPerSecond": 10, "burst": 1}})
    assert explicit.rate_limit == RateLimit(10.0, 1)


def test_several_configmaps_source() -> None:
    refs = [{"name": "a", "key": "items"}, {"name": "b", "key": "items"}]
    spec = parse({"itemsFrom": {"configMapKeyRefs": refs}})
    assert (spec.items, spec.items_from, spec.items_range) == (None, None, None)
    assert spec.items_from_many == (ConfigMapKeyRef("a", "items"), ConfigMapKeyRef("b", "items"))


def test_index_range_source() -> None:
    spec = parse({"itemsFrom": {"range": {"count": 1_000_000}}})
    assert (spec.items, spec.items_from) == (None, None)
    assert spec.items_range == ItemRange(start=0, count=1_000_000)
    assert spec.items_range.stop == 1_000_000
    top = parse({"itemsFrom": {"range": {"start": 2**31 - 1, "count": 10_000_000}}})
    assert top.items_range == ItemRange(2**31 - 1, 10_000_000)


BAD_SPECS: list[tuple[dict[str, Any], str, str]] = [
    ({}, "spec.items", "exactly one"),
    (
        {"items": ["a"], "itemsFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
        "spec.items",
        "exactly one",
    ),
    ({"items": "a"}, "spec.items", "list"),
    ({"items": []}, "spec.items", "at least one"),
    ({"items": ["a", 1]}, "spec.items[1]", "string"),
    ({"items": ["a", ""]}, "spec.items[1]", "1..1024"),
    ({"items": ["x" * (MAX_ITEM_LENGTH + 1)]}, "spec.items[0]", "1..1024"),
    ({"items": ["a", "b", "a"]}, "spec.items[2]", "duplicate"),
    (
        {"itemsFrom": {}},
        "spec.itemsFrom",
        "exactly one of spec.itemsFrom.configMapKeyRef, configMapKeyRefs",
    ),
    ({"itemsFrom": {"configMapKeyRefs": []}}, "spec.itemsFrom.configMapKeyRefs", "1..64"),
    (
        {"itemsFrom": {"configMapKeyRefs": [{"name": "c", "key": "k"}] * 65}},
        "spec.itemsFrom.configMapKeyRefs",
        "1..64",
    ),
    (
        {"itemsFrom": {"configMapKeyRefs": [{"name": "c"}]}},
        "spec.itemsFrom.configMapKeyRefs[0].key",
        "non-empty",
    ),
    (
        {"itemsFrom": {"configMapKeyRefs": [{"name": "c", "key": "k"}, {"name": "c", "key": "k"}]}},
        "spec.itemsFrom.configMapKeyRefs[1]",
        "duplicate reference c/k",
    ),
    (
        {"itemsFrom": {"configMapKeyRefs": [{"name": "c", "key": "k"}], "range": {"count": 1}}},
        "spec.itemsFrom",
        "exactly one",
    ),
    (
        {"itemsFrom": {"configMapKeyRef": {"name": "c", "key": "k"}, "range": {"count": 1}}},
        "spec.itemsFrom",
        "exactly one",
    ),
    ({"itemsFrom": {"range": {}}}, "spec.itemsFrom.range.count", "required"),
    ({"itemsFrom": {"range": {"count": 0}}}, "spec.itemsFrom.range.count", "1..10000000"),
    ({"itemsFrom": {"range": {"count": 10_000_001}}}, "spec.itemsFrom.range.count", "1..10000000"),
    ({"itemsFrom": {"range": {"count": "5"}}}, "spec.itemsFrom.range.count", "integer"),
    (
        {"itemsFrom": {"range": {"count": 5, "start": -1}}},
        "spec.itemsFrom.range.start",
        "0..2147483647",
    ),
    (
        {"itemsFrom": {"range": {"count": 5, "start": 2**31}}},
        "spec.itemsFrom.range.start",
        "0..2147483647",
    ),
    ({"itemsFrom": {"range": 5}}, "spec.itemsFrom.range", "object"),
    ({"itemsFrom": "cm"}, "spec.itemsFrom", "object"),
    (
        {"itemsFrom": {"configMapKeyRef": {"name": "c"}}},
        "spec.itemsFrom.configMapKeyRef.key",
        "non-empty",
    ),
    ({"items": ["a"], "parallelism": 101}, "spec.parallelism", "0..100"),
    ({"items": ["a"], "parallelism": -1}, "spec.parallelism", "0..100"),
    ({"items": ["a"], "parallelism": True}, "spec.parallelism", "integer"),
    ({"items": ["a"], "parallelism": 1.5}, "spec.parallelism", "integer"),
    ({"items": ["a"], "leaseSeconds": 0}, "spec.leaseSeconds", "1..3600"),
    ({"items": ["a"], "leaseSeconds": 3601}, "spec.leaseSeconds", "1..3600"),
    ({"items": ["a"], "retry": {"maxAttempts": 0}}, "spec.retry.maxAttempts", "1..100"),
    ({"items": ["a"], "retry": []}, "spec.retry", "object"),
    (
        {"items": ["a"], "retry": {"backoff": {"baseSeconds": 0}}},
        "spec.retry.backoff.baseSeconds",
        "> 0",
    ),
    (
        {"items": ["a"], "retry": {"backoff": {"baseSeconds": "1"}}},
        "spec.retry.backoff.baseSeconds",
        "number",
    ),
    (
        {"items": ["a"], "retry": {"backoff": {"baseSeconds": float("nan")}}},
        "spec.retry.backoff.baseSeconds",
        "number",
    ),
    (
        {"items": ["a"], "retry": {"backoff": {"baseSeconds": 5, "capSeconds": 4}}},
        "spec.retry.backoff.capSeconds",
        ">= baseSeconds",
    ),
    ({"items": ["a"], "retry": {"backoff": {"jitter": 1.5}}}, "spec.retry.backoff.jitter", "0..1"),
    ({"items": ["a"], "rateLimit": {}}, "spec.rateLimit.itemsPerSecond", "> 0"),
    (
        {"items": ["a"], "rateLimit": {"itemsPerSecond": 1, "burst": 0}},
        "spec.rateLimit.burst",
        ">= 1",
    ),
    ({"items": ["a"], "suspend": "yes"}, "spec.suspend", "boolean"),
    ({"items": ["a"], "ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished", ">= 0"),
    ({"items": ["a"], "redis": {"url": "http://r"}}, "spec.redis.url", "redis://"),
    ({"items": ["a"], "redis": {}}, "spec.redis.url", "non-empty"),
    (
        {"items": ["a"], "redis": {"url": "redis://r", "passwordSecretRef": {"name": "s"}}},
        "spec.redis.passwordSecretRef.key",
        "non-empty",
    ),
    ({"items": ["a"], "worker": {"image": ""}}, "spec.worker.image", "non-empty"),
    ({"items": ["a"], "worker": {"command": []}}, "spec.worker.command", "non-empty"),
    ({"items": ["a"], "worker": {"command": "echo"}}, "spec.worker.command", "list"),
    ({"items": ["a"], "worker": {"command": ["sh", 1]}}, "spec.worker.command", "strings"),
    ({"items": ["a"], "worker": {"env": [{"value": "1"}]}}, "spec.worker.env", "name"),
    ({"items": ["a"], "worker": {"resources": "big"}}, "spec.worker.resources", "object"),
]


@pytest.mark.parametrize(("raw", "field", "reason"), BAD_SPECS)
def test_bad_input_raises_an_error_naming_the_field(
    raw: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse(raw)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{field}: ")


def test_check_items_returns_the_items_in_order() -> None:
    assert check_items(["b", "a", "c"], "f") == ("b", "a", "c")


def test_parse_lines_skips_blank_lines_strips_and_counts_duplicates() -> None:
    items, duplicates = parse_lines("a\n\n  b  \r\na\n\t\nc\nb\n", "src")
    assert items == ("a", "b", "c")
    assert duplicates == 2


def test_parse_lines_errors_name_the_source_and_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_lines("ok\n\n" + "x" * (MAX_ITEM_LENGTH + 1) + "\n", "cm/key")
    assert info.value.field == "cm/key line 3"
    with pytest.raises(SpecError) as empty:
        parse_lines(" \n\n", "cm/key")
    assert empty.value.field == "cm/key"
    assert "no items" in empty.value.reason


_line = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@given(st.lists(_line, max_size=40))
def test_parse_lines_keeps_first_occurrences_and_counts_the_rest(lines: list[str]) -> None:
    text = "\n".join(lines)
    expected: list[str] = []
    nonblank = 0
    for line in text.splitlines():
        item = line.strip()
        if item:
            nonblank += 1
            if item not in expected:
                expected.append(item)
    if not expected:
        with pytest.raises(SpecError):
            parse_lines(text, "f")
        return
    items, duplicates = parse_lines(text, "f")
    assert list(items) == expected
    assert duplicates == nonblank - len(expected)
    # what parse_lines returns is always acceptable as inline items
    assert check_items(list(items), "spec.items") == items
