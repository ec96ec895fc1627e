"""The refresher keeps a slim body per QueueJob: without the parts a refresh never reads.

A QueueJob's ``metadata.managedFields`` and the two annotations that copy its spec as JSON
(kubectl's last-applied configuration, kopf's diff base) are most of its memory; the refresher
drops them from the bodies it keeps (from the watch and from its own patches' responses), keeps
everything else, and never modifies the object it was given. Keys and short strings of the
kept bodies are interned, so thousands of bodies share one copy of each.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from queuejob import naming
from queuejob.interning import compact
from queuejob.refresher import UNREAD_ANNOTATIONS, Refresher, signature, slim

UID = "uid-qj"
SPEC = {"items": [f"item-{i}" for i in range(50)], "parallelism": 4}


def _body(version: str = "7", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "workqueue.example.com/v1alpha1",
        "kind": "QueueJob",
        "metadata": {
            "name": "qj",
            "namespace": "ns",
            "uid": UID,
            "resourceVersion": version,
            "generation": 1,
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps({"spec": SPEC}),
                naming.DIFFBASE_ANNOTATION: json.dumps(SPEC),
                f"{naming.GROUP}/request": '{"action": "redrive"}',
                "team": "a",
                **annotations,
            },
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
                {"manager": "kopf", "operation": "Update", "subresource": "status"},
            ],
        },
        "spec": SPEC,
        "status": {"queue": "qj:ns:qj:1234", "phase": "Running"},
    }


def _refresher() -> Refresher:
    async def run(**_: Any) -> None:
        return None

    return Refresher(run, delay=10.0, workers=1)


def test_a_watched_body_is_kept_without_managed_fields_and_spec_copies() -> None:
    raw = _body()
    before = copy.deepcopy(raw)
    refresher = _refresher()
    refresher.observe(raw, "ADDED")
    kept = refresher.bodies[UID]
    assert "managedFields" not in kept["metadata"]
    assert set(kept["metadata"]["annotations"]) == {f"{naming.GROUP}/request", "team"}
    assert kept["spec"] == SPEC and kept["status"] == raw["status"]
    assert {k: v for k, v in kept["metadata"].items() if k not in ("annotations",)} == {
        k: v for k, v in raw["metadata"].items() if k not in ("annotations", "managedFields")
    }
    assert raw == before  # the watch's object is left as it was
    assert signature(kept) == signature(raw)  # nothing a refresh reacts to was dropped


def test_a_patch_response_is_kept_slim_too() -> None:
    refresher = _refresher()
    refresher.observe(_body("7"), "ADDED")
    refresher.keep(UID, _body("9"))
    kept = refresher.bodies[UID]
    assert kept["metadata"]["resourceVersion"] == "9"
    assert "managedFields" not in kept["metadata"]
    assert UNREAD_ANNOTATIONS.isdisjoint(kept["metadata"]["annotations"])


def test_slim_kept_json_is_a_fraction_of_the_object() -> None:
    raw = _body()
    assert len(json.dumps(slim(raw))) < 0.6 * len(json.dumps(raw))


@given(
    st.dictionaries(
        st.sampled_from(
            [*UNREAD_ANNOTATIONS, f"{naming.GROUP}/request", "a", "kopf.zalando.org/x"]
        ),
        st.text(max_size=5),
    ),
    st.booleans(),
)
def test_slim_drops_exactly_the_unread_parts(annotations: dict[str, str], managed: bool) -> None:
    raw: dict[str, Any] = {"metadata": {"name": "qj", "annotations": annotations}, "spec": {}}
    if managed:
        raw["metadata"]["managedFields"] = [{"manager": "m"}]
    kept = slim(raw)
    assert kept["metadata"]["annotations"] == {
        k: v for k, v in annotations.items() if k not in UNREAD_ANNOTATIONS
    }
    assert "managedFields" not in kept["metadata"]
    assert kept["spec"] == raw["spec"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


@given(JSON)
def test_compact_keeps_every_value_and_leaves_the_original_alone(value: Any) -> None:
    before = copy.deepcopy(value)
    assert compact(value) == value
    assert value == before


def test_kept_bodies_of_many_queuejobs_share_keys_and_short_strings() -> None:
    """Each watch event is parsed on its own, with its own copy of every key and string; the
    kept bodies share them."""
    refresher = _refresher()
    for i in range(2):
        raw = json.loads(json.dumps(_body()))  # a fresh parse, as from the watch
        raw["metadata"]["uid"] = f"uid-{i}"
        refresher.observe(raw, "ADDED")
    one, two = refresher.bodies["uid-0"], refresher.bodies["uid-1"]
    assert one == {**two, "metadata": {**two["metadata"], "uid": "uid-0"}}
    shared = [
        (next(iter(one["status"])), next(iter(two["status"]))),  # a key
        (one["status"]["phase"], two["status"]["phase"]),  # a short string
        (one["spec"]["items"][7], two["spec"]["items"][7]),
        (one["metadata"]["namespace"], two["metadata"]["namespace"]),
    ]
    assert all(a is b for a, b in shared)
