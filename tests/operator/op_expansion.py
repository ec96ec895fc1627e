"""Kubernetes' dependent-variable expansion of env values and args, as a test oracle.

A line-by-line model of ``third_party/forked/golang/expansion/expand.go`` in Kubernetes (read
from v1.35.4): ``$$`` is an escaped ``$``; ``$(NAME)`` is replaced by ``mapping(NAME)`` (the
kubelet's mapping returns ``$(NAME)`` unchanged for an unknown name); an incomplete ``$(`` and a
``$`` before any other character are copied as they are. It is independent of the operator's
code and of the localkube node agent's implementation.
"""

from __future__ import annotations

from collections.abc import Callable


def kube_expand(value: str, mapping: Callable[[str], str]) -> str:
    """``value`` after Kubernetes' expansion with ``mapping`` resolving variable names."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(value):
        if value[cursor] == "$" and cursor + 1 < len(value):
            out.append(value[checkpoint:cursor])
            rest = value[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    out.append(mapping(rest[1:close]))
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + value[checkpoint:]
