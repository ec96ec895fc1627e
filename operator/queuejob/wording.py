"""Counted nouns in messages: ``1 worker``, ``0 workers``, ``3 items``.

Every message the operator, the worker and ``kubectl queuejob`` build around a number that can
be 1 goes through :func:`count`, so no message reads "1 workers" (a test scans the sources for
a number placed before a plural noun by hand).
"""

from __future__ import annotations


def noun(n: int, singular: str, plural: str | None = None) -> str:
    """``singular`` if ``n`` is 1, else ``plural`` (default: ``singular`` + "s")."""
    return singular if n == 1 else (plural or f"{singular}s")


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun in the right number: ``count(1, "worker") == "1 worker"``."""
    return f"{n} {noun(n, singular, plural)}"
