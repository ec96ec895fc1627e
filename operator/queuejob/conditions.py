"""Status conditions: set one condition in a list, keeping lastTransitionTime stable.

``lastTransitionTime`` changes only when the condition's ``status`` changes, as in Kubernetes'
own ``meta.SetStatusCondition``; a reason or message update keeps the old time.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

#: All condition types the operator writes.
TYPES = ("Seeded", "Running", "Complete", "Failed", "Suspended", "ConfigError", "Autoscaling")


def now() -> str:
    """The current UTC time in RFC 3339 with seconds precision, as Kubernetes writes it."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
) -> list[dict[str, Any]]:
    """A new list with condition ``type_`` set; other conditions are kept unchanged."""
    out: list[dict[str, Any]] = [dict(c) for c in conditions or () if c.get("type") != type_]
    text = "True" if status else "False"
    old = next((c for c in conditions or () if c.get("type") == type_), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == text else None
    out.append(
        {
            "type": type_,
            "status": text,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or now(),
        }
    )
    order = {t: i for i, t in enumerate(TYPES)}
    out.sort(key=lambda c: order.get(str(c.get("type")), len(order)))
    return out


def get_condition(
    conditions: Iterable[Mapping[str, Any]] | None, type_: str
) -> Mapping[str, Any] | None:
    """The condition of type ``type_``, or None."""
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    """True if condition ``type_`` exists with status ``"True"``."""
    c = get_condition(conditions, type_)
    return c is not None and c.get("status") == "True"
