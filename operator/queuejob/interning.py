"""Compact copies of JSON objects that the operator keeps for long (the refresher's QueueJob
bodies, the worker Job cache).

A watch event is parsed into its own strings: every key ("metadata", "lastTransitionTime",
...) and every repeated value ("batch/v1", "True", a namespace) is a separate object in each
parsed event. :func:`compact` copies a value with its keys and short strings interned, so that
thousands of kept objects share one of each (a worker Job as the cache keeps it: 8.8 KiB as
parsed and deep-copied, 6.5 KiB compacted).
"""

from __future__ import annotations

import sys
from typing import Any

#: Strings up to this length are interned in kept bodies (names, phases, reasons, timestamps).
INTERN_MAX = 64


def compact(value: Any) -> Any:
    """A copy of a JSON value whose dict keys and strings of at most :data:`INTERN_MAX`
    characters are interned: every QueueJob's body repeats the same keys ("metadata",
    "conditions", "lastTransitionTime", ...), and a parsed watch event has its own copy of each;
    interned, thousands of kept bodies share one. Equal to ``value``."""
    if isinstance(value, dict):
        return {(sys.intern(k) if isinstance(k, str) else k): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= INTERN_MAX:
        return sys.intern(value)
    return value
