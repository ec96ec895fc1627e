"""Unit tests of ``queuejob.conditions``: set_condition semantics like meta.SetStatusCondition."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from queuejob import conditions

OLD = "2020-01-01T00:00:00Z"


def _cond(type_: str, status: str, reason: str = "R", since: str = OLD) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": "m",
        "lastTransitionTime": since,
    }


def test_now_is_rfc3339_utc_seconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", conditions.now())


def test_new_condition_gets_the_current_time() -> None:
    out = conditions.set_condition(None, "Seeded", True, "ItemsSeeded", "3 items")
    assert len(out) == 1
    assert out[0]["type"] == "Seeded"
    assert out[0]["status"] == "True"
    assert out[0]["reason"] == "ItemsSeeded"
    assert out[0]["message"] == "3 items"
    assert out[0]["lastTransitionTime"] != OLD


def test_same_status_keeps_the_transition_time_but_updates_reason_and_message() -> None:
    out = conditions.set_condition([_cond("Running", "True")], "Running", True, "New", "msg")
    assert out[0]["lastTransitionTime"] == OLD
    assert (out[0]["reason"], out[0]["message"]) == ("New", "msg")


def test_status_flip_moves_the_transition_time() -> None:
    out = conditions.set_condition([_cond("Running", "True")], "Running", False, "Done", "x")
    assert out[0]["status"] == "False"
    assert out[0]["lastTransitionTime"] != OLD


def test_other_conditions_are_kept_and_the_input_is_not_modified() -> None:
    before = [_cond("Failed", "True"), _cond("Seeded", "True"), _cond("Custom", "False")]
    snapshot = [dict(c) for c in before]
    out = conditions.set_condition(before, "Running", True, "R", "m")
    assert before == snapshot
    assert [c["type"] for c in out] == ["Seeded", "Running", "Failed", "Custom"]
    assert out[0] == snapshot[1]


@given(
    st.lists(st.sampled_from(conditions.TYPES), unique=True),
    st.sampled_from(conditions.TYPES),
    st.booleans(),
)
def test_one_condition_per_type_in_the_documented_order(
    present: list[str], type_: str, status: bool
) -> None:
    out = conditions.set_condition([_cond(t, "True") for t in present], type_, status, "R", "m")
    types = [c["type"] for c in out]
    assert sorted(set(types), key=conditions.TYPES.index) == types
    assert set(types) == {*present, type_}
    assert conditions.is_true(out, type_) is status


def test_get_condition_and_is_true() -> None:
    conds = [_cond("Seeded", "True"), _cond("Failed", "False")]
    assert conditions.get_condition(conds, "Seeded") == conds[0]
    assert conditions.get_condition(conds, "Complete") is None
    assert conditions.is_true(conds, "Seeded")
    assert not conditions.is_true(conds, "Failed")
    assert not conditions.is_true(None, "Seeded")
