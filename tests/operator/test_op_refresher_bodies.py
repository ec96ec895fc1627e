"""The refresher keeps a slim body per QueueJob: without the parts a refresh never reads.

A QueueJob's ``metadata.managedFields`` and the two annotations that copy its spec as JSON
(kubectl's last-applied configuration, kopf's diff base) are most of its memory; the refresher
drops them from the bodies it keeps (from the watch and from its own patches' responses), keeps
everything else, and never modifies the object it was given. The kept bodies are packed as JSON
bytes; every lookup unpacks a new copy.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from queuejob import naming
from queuejob.keptbodies import UNREAD_ANNOTATIONS, KeptBodies, slim
from queuejob.packing import pack, unpack
from queuejob.refresher import Refresher, signature

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
def test_unpack_gives_back_what_was_packed(value: Any) -> None:
    before = copy.deepcopy(value)
    packed = pack(value)
    assert isinstance(packed, bytes)
    assert unpack(packed) == value
    assert value == before


def test_every_lookup_is_a_new_copy_and_changing_it_changes_nothing_kept() -> None:
    refresher = _refresher()
    refresher.observe(json.loads(json.dumps(_body())), "ADDED")
    one = refresher.bodies[UID]
    one["status"]["phase"] = "Failed"
    one["spec"]["items"].clear()
    two = refresher.bodies[UID]
    assert two is not one
    assert two["status"]["phase"] == "Running" and two["spec"]["items"] == SPEC["items"]


def test_the_kept_version_is_the_bodys_and_the_newest_wins() -> None:
    refresher = _refresher()
    refresher.observe(_body("12"), "ADDED")
    refresher.observe(_body("9"), "MODIFIED")  # older than what is kept: ignored
    assert refresher.bodies.version(UID) == 12
    assert refresher.bodies[UID]["metadata"]["resourceVersion"] == "12"
    refresher.keep(UID, _body("15"))
    assert refresher.bodies.version(UID) == 15
    refresher.forget(UID)
    assert refresher.bodies.version(UID) is None and UID not in refresher.bodies


def test_kept_bodies_are_a_mapping_of_uids() -> None:
    kept = KeptBodies()
    for i in range(3):
        raw = _body(str(i))
        raw["metadata"]["uid"] = f"uid-{i}"
        kept.put(f"uid-{i}", raw)
    assert sorted(kept) == ["uid-0", "uid-1", "uid-2"] and len(kept) == 3
    assert kept.get("uid-1", {})["metadata"]["resourceVersion"] == "1"
    assert kept.get("uid-9") is None
    kept.discard("uid-1")
    assert "uid-1" not in kept and len(kept) == 2
