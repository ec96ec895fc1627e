"""The queue's Lua scripts, registered on a client with redis-py's ``register_script``.

Each ``scripts/<name>.lua`` is run with the parts of ``scripts/lib.lua`` it uses prepended:
the key prelude, then each top-level definition (``local function f``, ``local NAME =``) that
the script's body refers to, directly or through another included one, in the library's order.
Redis runs the whole source on every call, so leaving unused helpers out makes each call
cheaper (the hot scripts skip most of the library). Every multi-step change of the queue
happens inside one script, so it is atomic; scripts check key types before writing, so an
error never leaves a half-applied change.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

NAMES = (
    "seed",
    "seed_range",
    "configure",
    "lease",
    "complete",
    "complete_and_lease",
    "fail",
    "renew",
    "release",
    "reap",
    "stats",
    "dead_letters",
    "in_flight",
    "bucket",
    "redrive",
    "leases",
)


_DEFINITION = re.compile(r"local (?:function )?([A-Za-z_][A-Za-z0-9_]*)\b")


def _split(lib: str) -> tuple[str, list[tuple[str, str]]]:
    """The library's prelude (up to its first top-level definition after the keys) and its
    definitions as (name, text), each with the comment lines just above it."""
    lines = lib.splitlines(keepends=True)
    starts: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        match = _DEFINITION.match(line)
        if match and not line.startswith("local K_"):
            first = index
            while first > 0 and lines[first - 1].startswith("--"):
                first -= 1
            starts.append((first, match.group(1)))
    if not starts:
        return lib, []
    prelude = "".join(lines[: starts[0][0]])
    blocks = []
    for (begin, name), (end, _) in zip(starts, [*starts[1:], (len(lines), "")], strict=True):
        blocks.append((name, "".join(lines[begin:end])))
    return prelude, blocks


def _uses(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_.]){name}\b", text) is not None


@cache
def source(name: str) -> str:
    """The full Lua source of script ``name`` (prelude, the definitions it uses, body)."""
    if name not in NAMES and name != "lib":
        raise KeyError(f"no queue script named {name!r}")
    # The scripts ship next to this module (package data).
    folder = Path(__file__).resolve().parent / "scripts"
    lib = (folder / "lib.lua").read_text(encoding="utf-8")
    if name == "lib":
        return lib
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    prelude, blocks = _split(lib)
    needed: set[str] = set()
    grew = True
    while grew:
        grew = False
        text = body + "".join(block for n, block in blocks if n in needed)
        for block_name, _ in blocks:
            if block_name not in needed and _uses(text, block_name):
                needed.add(block_name)
                grew = True
    parts = [block for block_name, block in blocks if block_name in needed]
    return prelude + "".join(parts) + "\n" + body


class QueueScripts:
    """The registered scripts of one client (EVALSHA, with a transparent SCRIPT LOAD on miss)."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.seed: Script = client.register_script(source("seed"))
        self.seed_range: Script = client.register_script(source("seed_range"))
        self.configure: Script = client.register_script(source("configure"))
        self.lease: Script = client.register_script(source("lease"))
        self.complete: Script = client.register_script(source("complete"))
        self.complete_and_lease: Script = client.register_script(source("complete_and_lease"))
        self.fail: Script = client.register_script(source("fail"))
        self.renew: Script = client.register_script(source("renew"))
        self.release: Script = client.register_script(source("release"))
        self.reap: Script = client.register_script(source("reap"))
        self.stats: Script = client.register_script(source("stats"))
        self.dead_letters: Script = client.register_script(source("dead_letters"))
        self.in_flight: Script = client.register_script(source("in_flight"))
        self.redrive: Script = client.register_script(source("redrive"))
        self.leases: Script = client.register_script(source("leases"))
