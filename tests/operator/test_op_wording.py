"""Counted nouns: no message says "1 workers" (or "1 items", "1 dead letters", ...)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from queuejob import wording
from queuejob.handlers.autoscale import condition_message
from queuejob.spec import Autoscaling
from queuejob_kubectl import render

ROOT = Path(__file__).resolve().parents[2]
#: A number put before a plural noun by hand in an f-string: ``f"{n} workers"``,
#: ``f"({n} active workers)"``. Constants (``{MAX_X}``) are never 1 and may stay; a value
#: with a conversion (``{item!s:<20} attempts 2``) is a table cell before a label, not a count.
HAND_PLURAL = re.compile(
    r"\{(?P<expr>[^{}!]+)\}(?: [a-z-]+)? "
    r"(?:workers|items|leases|pods|retries|attempts|dead letters|keys|entries|requests)\b"
)


@pytest.mark.parametrize(
    ("n", "expected"), [(0, "0 workers"), (1, "1 worker"), (2, "2 workers"), (100, "100 workers")]
)
def test_count_puts_the_noun_in_the_right_number(n: int, expected: str) -> None:
    assert wording.count(n, "worker") == expected


def test_irregular_plural() -> None:
    assert wording.count(1, "retry", "retries") == "1 retry"
    assert wording.count(3, "retry", "retries") == "3 retries"


def test_kubectl_queuejob_status_says_1_active_worker() -> None:
    data = {
        "name": "q",
        "namespace": "ns",
        "phase": "Running",
        "jobName": "q-workers",
        "activeWorkers": 1,
        "counts": {"total": 1, "pending": 0, "leased": 1},
        "conditions": [],
        "events": [],
    }
    text = render.status_text(data)
    assert "(1 active worker)" in text and "1 active workers" not in text
    assert "(2 active workers)" in render.status_text({**data, "activeWorkers": 2})


def test_autoscaling_condition_with_one_worker() -> None:
    policy = Autoscaling(
        min_parallelism=0,
        max_parallelism=4,
        items_per_worker=1,
        scale_down_stabilization_seconds=30,
    )
    message = condition_message(policy, desired=1, spec_parallelism=1)
    assert message.startswith("1 worker from queue depth: one per 1 pending or leased item,")


def test_no_message_puts_a_count_before_a_plural_noun_by_hand() -> None:
    # The operator, the worker, kubectl queuejob and the demo: every count goes through
    # queuejob.wording, so it reads "1 worker", never "1 workers".
    found = []
    sources = [
        *(ROOT / "operator").rglob("*.py"),
        *(ROOT / "controlplane" / "queuejob_demo").rglob("*.py"),
    ]
    assert len(sources) > 40
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in HAND_PLURAL.finditer(line):
                if not re.fullmatch(r"[A-Z_]+", match["expr"]):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "use queuejob.wording.count:\n" + "\n".join(found)
