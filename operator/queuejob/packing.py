"""API objects the operator keeps for long, packed as JSON bytes (the refresher's QueueJob
bodies, the worker Job cache).

A parsed object is a tree of small Python objects: a dict per mapping (about 200 bytes even
when small), a list per array, a str per key and value. A worker Job cut to what the operator
reads is 5.2 KiB that way, a QueueJob's slim body 3.0 KiB, with their keys and short strings
interned and shared; packed as compact JSON they are 1.5 and 1.3 KiB, in one block each, so
10,000 QueueJobs keep their Jobs and bodies in about 28 MiB instead of 82, and none of it
pins the small-object arenas that the parsing of every watch event fills and frees.

The price is a parse per read (tens of microseconds for such an object), once per status
refresh: small beside the refresh's own Redis and API calls.

Guarantees: :func:`unpack` of :func:`pack` of a JSON value (dicts with string keys, lists,
strings, integers, finite floats, booleans, None) is equal to it; every :func:`unpack` returns
new objects, so a caller may modify what it gets without changing what is kept.
"""

from __future__ import annotations

import json
from typing import Any

# ASCII output: a lone surrogate (which JSON escapes can carry) packs like any other character.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def pack(value: Any) -> bytes:
    """``value`` as compact JSON bytes."""
    return _ENCODER.encode(value).encode("ascii")


def unpack(data: bytes) -> Any:
    """The value :func:`pack` packed, as new objects."""
    return json.loads(data)


__all__ = ["pack", "unpack"]
