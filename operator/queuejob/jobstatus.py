"""Reading a worker Job's status as the API server reports it (a plain dict, or None if absent).

The helpers accept ``None`` for a Job that does not exist, so callers need no special case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def active_workers(job: Mapping[str, Any] | None) -> int:
    """``status.active`` of the Job: its running worker pods (0 when absent or unknown)."""
    return int(((job or {}).get("status") or {}).get("active") or 0)


def true_condition(job: Mapping[str, Any] | None, *types: str) -> Mapping[str, Any] | None:
    """The first of the Job's conditions whose type is one of ``types`` and status ``"True"``."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") in types and condition.get("status") == "True":
            return dict(condition)
    return None


def failed_indexes(job: Mapping[str, Any] | None) -> str:
    """``status.failedIndexes`` of an Indexed Job with ``backoffLimitPerIndex`` (e.g. ``"1,3-4"``),
    or ``""`` when none failed, the Job is absent or has no per-index limit."""
    return str(((job or {}).get("status") or {}).get("failedIndexes") or "")
