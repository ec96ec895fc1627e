"""manifests/deploy-local is manifests/deploy with only the image references swapped.

A cluster that cannot pull (the local node here) runs the images built on this machine: the
overlay must change nothing else, and every image it names must be one this repo builds.
"""

from __future__ import annotations

import copy
from typing import Any

from mf_support import REPO, load_docs

LOCAL_IMAGES = {"queuejob:dev", "queuejob-redis:dev"}  # make image, make redis-image


def _render(cluster: Any, folder: str) -> list[dict[str, Any]]:
    return load_docs(cluster.kubectl("kustomize", str(REPO / "manifests" / folder)).stdout)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def test_overlay_swaps_only_images(cluster: Any) -> None:
    base = _render(cluster, "deploy")
    local = _render(cluster, "deploy-local")
    assert len(base) == len(local)
    swapped = []
    for ours, theirs in zip(base, local, strict=True):
        ours, theirs = copy.deepcopy(ours), copy.deepcopy(theirs)
        for a, b in zip(_containers(ours), _containers(theirs), strict=True):
            if a["image"] != b["image"]:
                swapped.append((a["image"], b["image"]))
            a.pop("image"), b.pop("image")
        assert ours == theirs, f"{ours['kind']}/{ours['metadata']['name']} differs beyond images"
    assert [new for _, new in swapped] == ["queuejob-redis:dev"], swapped
    images = {c["image"] for doc in local for c in _containers(doc)}
    assert images <= LOCAL_IMAGES, images - LOCAL_IMAGES
    pulls = {c.get("imagePullPolicy") for doc in local for c in _containers(doc)}
    assert pulls == {"IfNotPresent"}, pulls
