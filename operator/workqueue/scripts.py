"""The queue's Lua scripts, registered on a client with redis-py's ``register_script``, and
the worker calls' function library (:func:`library`).

Each ``scripts/<name>.lua`` is run with the parts of ``scripts/lib.lua`` it uses prepended:
the key prelude, then each top-level definition (``local function f``, ``local NAME =``) that
the script's body refers to, directly or through another included one, in the library's order.
Redis runs the whole source on every call, so leaving unused helpers out makes each call
cheaper (the hot scripts skip most of the library). Every multi-step change of the queue
happens inside one script, so it is atomic; scripts check key types before writing, so an
error never leaves a half-applied change.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache, cached_property
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


def _read(name: str) -> str:
    # The scripts ship next to this module (package data).
    return (Path(__file__).resolve().parent / "scripts" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The full Lua source of script ``name`` (prelude, the definitions it uses, body)."""
    if name not in NAMES and name != "lib":
        raise KeyError(f"no queue script named {name!r}")
    lib = _read("lib")
    if name == "lib":
        return lib
    body = "bind_keys()\n" + _read(name)
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


#: The worker calls, also loaded as Redis functions (:func:`library`).
FUNCTIONS = ("lease", "complete", "complete_and_lease", "fail", "renew", "release")


@dataclass(frozen=True)
class Library:
    """The Redis function library of the worker calls (``FUNCTION LOAD`` once, ``FCALL`` per call).

    An ``EVALSHA`` runs the whole script source on every call, so each call defines its helper
    functions again (about a tenth of a single-item ``complete_and_lease``); a library is run once,
    when loaded, and each ``FCALL`` runs only the function's body. The library holds all of
    ``lib.lua`` (the helpers become the library's locals, the ``K_*`` key names its upvalues,
    bound by each call) and one function per name in :data:`FUNCTIONS`, with the same body,
    keys, arguments and reply as the script of that name.

    The name carries a digest of the code (``wq_<digest>``, functions ``wq_<digest>_<script>``):
    two releases never replace each other's library, and a library of that name always holds
    exactly this code. Redis keeps functions in its RDB/AOF files and replicates them, but not
    across a restart without persistence, nor onto a new cluster node: callers fall back to the
    scripts when a function is missing (see ``LeaseQueue``).
    """

    name: str
    code: str

    def function(self, script: str) -> str:
        """The function name of ``script`` (one of :data:`FUNCTIONS`)."""
        if script not in FUNCTIONS:
            raise KeyError(f"no queue function named {script!r}")
        return f"{self.name}_{script}"


@cache
def library() -> Library:
    """The worker calls' function library (see :class:`Library`)."""
    prelude, blocks = _split(_read("lib"))
    parts = ["local KEYS, ARGV\n", prelude, *(block for _, block in blocks)]
    bodies = [(name, _read(name)) for name in FUNCTIONS]
    digest = hashlib.sha1("".join([*parts, *(b for _, b in bodies)]).encode()).hexdigest()[:16]
    name = f"wq_{digest}"
    for script, body in bodies:
        parts.append(
            f"redis.register_function('{name}_{script}', function(keys, args)\n"
            f"KEYS, ARGV = keys, args\nbind_keys()\n{body}end)\n"
        )
    return Library(name, f"#!lua name={name}\n" + "".join(parts))


def _registered(name: str) -> cached_property[Script]:
    def make(self: QueueScripts) -> Script:
        return self.client.register_script(source(name))

    return cached_property(make)


class QueueScripts:
    """The registered scripts of one client (EVALSHA, with a transparent SCRIPT LOAD on miss).

    Each is made on first use: making one hashes its whole source, and a queue opened for a
    few calls (as the operator's status refresh opens one each time) uses only a few scripts.
    """

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self.client = client

    seed = _registered("seed")
    seed_range = _registered("seed_range")
    configure = _registered("configure")
    lease = _registered("lease")
    complete = _registered("complete")
    complete_and_lease = _registered("complete_and_lease")
    fail = _registered("fail")
    renew = _registered("renew")
    release = _registered("release")
    reap = _registered("reap")
    stats = _registered("stats")
    dead_letters = _registered("dead_letters")
    in_flight = _registered("in_flight")
    redrive = _registered("redrive")
    leases = _registered("leases")
