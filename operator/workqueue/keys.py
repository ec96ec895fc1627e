"""Redis key names of one queue; all share the hash tag ``{name}`` (one Redis Cluster slot).

Scripts receive every key, in the order of :data:`KEY_TYPES` (``KEYS[1..13]``, also the key
numbering of ``check_types`` in ``scripts/lib.lua``): Redis Cluster checks only declared keys,
so a queue's scripts stay whole during a slot migration (see ``scripts/lib.lua``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workqueue.errors import QueueConfigError

#: Queue names: 1..200 printable characters without braces (they would break the hash tag)
#: or whitespace.
NAME_PATTERN = re.compile(r"[^\s{}]{1,200}")

#: (role, Redis type), numbered from 1 as in ``check_types`` in ``scripts/lib.lua``.
KEY_TYPES = (
    ("config", "hash"),
    ("seen", "set"),
    ("pending", "list"),
    ("timers", "zset"),
    ("holders", "hash"),
    ("attempts", "hash"),
    ("succeeded", "hash"),
    ("dead", "zset"),
    ("errors", "hash"),
    ("acked", "hash"),
    ("counters", "hash"),
    ("bucket", "hash"),
    ("durations", "hash"),
)
ROLES = tuple(role for role, _ in KEY_TYPES)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise ``QueueConfigError``."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise QueueConfigError(
            f"queue name {name!r} is invalid: it must be 1..200 characters without braces "
            "or whitespace"
        )
    return name


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys ``wq:{name}:<role>`` of the queue ``name``."""

    name: str

    def __post_init__(self) -> None:
        validate_name(self.name)

    @property
    def prefix(self) -> str:
        return f"wq:{{{self.name}}}:"

    def key(self, role: str) -> str:
        if role not in ROLES:
            raise KeyError(role)
        return self.prefix + role

    @property
    def ordered(self) -> list[str]:
        """All keys, in the order of :data:`KEY_TYPES`."""
        return [self.prefix + role for role in ROLES]
