"""The docs (README.md, docs/*.md and docs/contributing/*.md) match the code they document.

Every QueueJob spec field of the CRD (with its default and limits) must appear in
docs/queuejob-reference.md, every operator setting (with its default) in docs/settings.md and
every metric the operator exports in docs/metrics.md; every Makefile target the docs tell people
to run must exist; every relative link must reach a file and heading that exist, and every page
of docs/ must be reachable from the README. A new field, setting or metric without
documentation fails here. User pages (README.md and docs/*.md) stay guides: no internal
tracking numbers, no measurements outside docs/benchmarks.md; contributor pages live in
docs/contributing/, indexed by its README.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from mf_support import REPO
from yaml import safe_load_all

from queuejob.metrics import Metrics
from queuejob.settings import SETTINGS
from queuejob_kubectl import render

README = (REPO / "README.md").read_text()
DOCS = REPO / "docs"
CONTRIBUTING = DOCS / "contributing"
#: The user's pages: the README and the guides of docs/ (not docs/contributing/).
USER_PAGES = {path: path.read_text() for path in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]}
PAGES = {**USER_PAGES, **{path: path.read_text() for path in sorted(CONTRIBUTING.glob("*.md"))}}
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


#: Internal tracking references: "issue 4242", "issue #4242", a bare "#4242". A reference to another
#: project's tracker names it ("kubernetes/kubernetes#119378") and is allowed.
TRACKING = re.compile(r"\bissues? *#?\d+|(?<![\w/.-])#\d+\b", re.I)


def test_no_page_names_an_internal_tracking_number() -> None:
    found = [
        f"{page.relative_to(REPO)}:{number}: {match.group(0)!r}"
        for page, text in PAGES.items()
        for number, line in enumerate(text.splitlines(), 1)
        for match in TRACKING.finditer(line)
    ]
    assert not found, found
    # The pattern itself: what it must and must not catch.
    assert TRACKING.search("is a separate part of issue 4242") and TRACKING.search("see #4242")
    assert not TRACKING.search("kubernetes/kubernetes#119378") and not TRACKING.search("a#b")


def test_contributor_pages_are_indexed_and_linked_from_the_readme() -> None:
    assert "](docs/contributing/README.md)" in README
    index = (CONTRIBUTING / "README.md").read_text()
    linked = set(re.findall(r"\]\(([^)#/]+\.md)", index))
    pages = {path.name for path in CONTRIBUTING.glob("*.md")} - {"README.md"}
    assert len(pages) >= 4, pages
    assert pages <= linked, f"pages docs/contributing/README.md does not link: {pages - linked}"


def test_measurements_are_on_the_benchmarks_page_only() -> None:
    # A user page may name a figure in passing; the measurement reports (load averages,
    # before/after tables, ratios to a baseline, profiles) belong in docs/benchmarks.md.
    report = re.compile(r"load average|\| *before *\|.*\| *after|py-spy|ratio to", re.I)
    found = [
        f"{page.relative_to(REPO)}:{number}"
        for page, text in USER_PAGES.items()
        if page.name != "benchmarks.md"
        for number, line in enumerate(text.splitlines(), 1)
        if report.search(line)
    ]
    assert not found, found
    assert "## The operator: status by events" in (DOCS / "benchmarks.md").read_text()


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def test_deploying_to_any_cluster_builds_pushes_and_sets_the_image() -> None:
    # queuejob:dev is in no registry: the steps must put the user's image into the operator's
    # container (by its name in the manifest) and into the workers' QUEUEJOB_WORKER_IMAGE.
    steps = _section((DOCS / "deploying.md").read_text(), "## Any cluster")
    manifest = list(safe_load_all((REPO / "manifests" / "deploy" / "operator.yaml").read_text()))
    [deployment] = [d for d in manifest if d and d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"] for e in container["env"]}
    assert "QUEUEJOB_WORKER_IMAGE" in env
    for step in (
        "make image",
        "docker push REGISTRY/queuejob:TAG",
        f"set image deployment/{deployment['metadata']['name']} "
        f"{container['name']}=REGISTRY/queuejob:TAG",
        f"set env deployment/{deployment['metadata']['name']} "
        "QUEUEJOB_WORKER_IMAGE=REGISTRY/queuejob:TAG",
    ):
        assert step in steps, f"docs/deploying.md's Any cluster section lacks {step!r}"
    assert steps.index("docker push") < steps.index("\nkubectl apply -k manifests/deploy")


def test_troubleshooting_a_queuejob_without_status_matches_the_plugin() -> None:
    # `kubectl queuejob status` on a QueueJob the operator never saw prints how to check the
    # operator; the troubleshooting row gives the same commands, for a deployment and locally.
    rows = [
        line
        for line in (DOCS / "troubleshooting.md").read_text().splitlines()
        if "has not seen this QueueJob" in line
    ]
    assert len(rows) == 1, rows
    commands = re.findall(r"kubectl [^`]+?(?=  |$)", "\n".join(render.UNSEEN), re.M)
    assert len(commands) == 2, commands
    for command in commands:
        assert f"`{command.strip()}`" in rows[0], command
    assert "On this machine" in rows[0] and "no PHASE" in rows[0]
