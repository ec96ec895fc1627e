"""The docs (README.md and docs/*.md) match the code they document.

Every QueueJob spec field of the CRD (with its default and limits) must appear in
docs/queuejob-reference.md, every operator setting (with its default) in docs/settings.md and
every metric the operator exports in docs/metrics.md; every Makefile target the docs tell people
to run must exist; every relative link must reach a file and heading that exist, and every page
of docs/ must be reachable from the README. A new field, setting or metric without
documentation fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from mf_support import REPO

from queuejob.metrics import Metrics
from queuejob.settings import SETTINGS

README = (REPO / "README.md").read_text()
DOCS = REPO / "docs"
PAGES = {path: path.read_text() for path in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]}
REFERENCE = (DOCS / "queuejob-reference.md").read_text()
SETTINGS_PAGE = (DOCS / "settings.md").read_text()
METRICS_PAGE = (DOCS / "metrics.md").read_text()
#: Fields documented as a whole (their sub-fields are Kubernetes' own types).
OPAQUE = {
    "spec.worker.env",
    "spec.worker.resources",
    "spec.itemsFrom.configMapKeyRef",
    "spec.redis.passwordSecretRef",
}


def _rows(text: str) -> dict[str, str]:
    """Markdown table rows of ``text`` keyed by their first cell (without backticks)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1].strip().strip("`")
            rows[first] = line
    return rows


def _spec_fields() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "queuejobs.workqueue.example.com.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        props = node.get("properties")
        if not props or prefix in OPAQUE:
            fields[prefix] = node
            return
        for name, child in props.items():
            walk(f"{prefix}.{name}", child)

    walk("spec", schema)
    return fields


def test_every_spec_field_is_documented_with_its_default() -> None:
    rows = _rows(REFERENCE)
    fields = _spec_fields()
    assert len(fields) >= 15, fields.keys()
    for path, node in fields.items():
        assert path in rows, f"docs/queuejob-reference.md lacks {path}"
        if "default" in node and not isinstance(node["default"], dict):
            default = str(node["default"]).lower()
            assert f"`{default}`" in rows[path].lower(), f"{path}: default {default} not in docs"


def test_every_operator_setting_is_documented_with_its_default() -> None:
    rows = _rows(SETTINGS_PAGE)
    for setting in SETTINGS:
        assert setting.env in rows, f"docs/settings.md's table lacks {setting.env}"
        row = rows[setting.env]
        assert f"`{setting.flag}`" in row
        assert (f"`{setting.default}`" if setting.default else "(empty)") in row, row


def test_every_metric_is_documented() -> None:
    names = {family.name for family in Metrics(concurrency_limit=4).registry.collect()}
    assert "workqueue_depth" in names
    rows = _rows(METRICS_PAGE)
    missing = sorted(name for name in names if name not in rows)
    assert not missing, f"docs/metrics.md's table lacks {missing}"


def test_make_targets_named_in_the_docs_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-zA-Z0-9_-]+):", makefile, re.M))
    named: set[str] = set()
    for text in PAGES.values():
        named |= set(re.findall(r"`make ([a-z0-9-]+)", text))
        named |= set(re.findall(r"^make ([a-z0-9-]+)", text, re.M))
    assert {"demo", "test", "deploy", "e2e-kind"} <= named, named
    assert named <= targets, f"docs name missing Makefile targets: {sorted(named - targets)}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading's text."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    anchors, in_code = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_anchor(line.lstrip("#")))
    return anchors


def test_every_relative_link_reaches_a_file_and_heading() -> None:
    broken = []
    for page, text in PAGES.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(REPO)} -> {target}"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
                broken.append(f"{where}: no such heading")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {m for m in re.findall(r"\]\(docs/([^)#]+\.md)", README)}
    pages = {path.name for path in DOCS.glob("*.md")}
    assert len(pages) >= 10, pages
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"
    assert len(README) < 12_000, "README.md is the landing page: the reference goes in docs/"


def _schema_nodes() -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every property of the QueueJob schema, array items as ``[]``."""
    crd = yaml.safe_load((REPO / "crds" / "queuejobs.workqueue.example.com.yaml").read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def walk(prefix: str, node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, child in node.get("properties", {}).items():
            yield f"{prefix}.{name}".lstrip("."), child
            yield from walk(f"{prefix}.{name}", child)
        if "items" in node:
            yield from walk(f"{prefix}[]", node["items"])

    yield from walk("", root)


def test_kubectl_explain_has_a_description_for_every_field() -> None:
    # metadata's own schema may hold nothing but restrictions of name/generateName.
    bare = [
        path
        for path, node in _schema_nodes()
        if "description" not in node and not path.startswith("metadata")
    ]
    assert not bare, f"fields kubectl explain would show as <empty>: {bare}"


def test_every_spec_bound_is_documented() -> None:
    # A limit the API server enforces is stated in the field's reference row or its description.
    rows = _rows(REFERENCE)
    missing = []
    for path, node in _schema_nodes():
        if not path.startswith("spec."):
            continue
        owners = [p for p in rows if path == p or path.startswith((f"{p}.", f"{p}[]"))]
        row = rows[max(owners, key=len)] if owners else ""
        text = row + " " + str(node.get("description", ""))
        for bound in ("maximum", "maxLength", "maxItems"):
            if bound in node:
                number = f"{node[bound]:g}" if isinstance(node[bound], float) else str(node[bound])
                if number not in text:
                    missing.append(f"{path}: {bound} {number}")
    assert not missing, f"limits not in the reference row or the field's description: {missing}"
    assert "at most 52 characters" in rows["metadata.name"], "the name limit is not in the docs"


def test_first_example_is_minimal_yaml() -> None:
    # The README opens with a QueueJob and the output of running it: it must be the example file.
    first = re.search(r"```yaml\n(.*?)```", README, re.S)
    assert first, "README has no yaml example"
    example = (REPO / "manifests" / "examples" / "minimal.yaml").read_text()
    assert yaml.safe_load(first.group(1)) == yaml.safe_load(example)


def _number(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _stated_limits(node: dict[str, Any]) -> list[str]:
    """The phrases a field's description must hold for ``kubectl explain`` to show the
    default and the limits the schema enforces: ``default 30``, ``1..3600``, ``> 0``,
    ``at most 86400``, ``1..1024 characters``, ``at most 64 entries``."""
    phrases = []
    if "default" in node and not isinstance(node["default"], dict):
        value = node["default"]
        phrases.append(f"default {str(value).lower() if isinstance(value, bool) else value}")
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None and node.get("exclusiveMinimum"):
        phrases.append(f"> {_number(low)}")
        low = None
    if low is not None and high is not None:
        phrases.append(f"{_number(low)}..{_number(high)}")
    elif high is not None:
        phrases.append(f"at most {_number(high)}")
    elif low is not None:
        phrases.append(f"at least {_number(low)}")
    for lower, upper, unit in (
        ("minLength", "maxLength", "characters"),
        ("minItems", "maxItems", "entries"),
        ("minProperties", "maxProperties", "entries"),
    ):
        if upper in node:
            least = node.get(lower, 0)
            phrases.append(
                f"{least}..{node[upper]} {unit}" if least > 1 else f"at most {node[upper]} {unit}"
            )
    return phrases


def test_kubectl_explain_states_every_default_and_limit_of_the_spec() -> None:
    # `kubectl explain queuejob.spec.<field>` prints the description only: the default and the
    # range must be in it, exactly as the schema has them. A list's element limits (its items
    # have no description of their own) go in the list's description.
    wrong = []
    for path, node in _schema_nodes():
        if not path.startswith("spec."):
            continue
        text = str(node.get("description", ""))
        for phrase in _stated_limits(node):
            if phrase not in text:
                wrong.append(f"{path}: {phrase!r} not in {text!r}")
        element = node.get("items")
        if isinstance(element, dict) and "properties" not in element:
            for phrase in _stated_limits(element):
                if f"each {phrase}" not in text:
                    wrong.append(f"{path}[]: 'each {phrase}' not in {text!r}")
    assert not wrong, "\n".join(wrong)
