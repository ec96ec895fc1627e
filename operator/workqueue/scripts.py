"""The queue's Lua scripts, registered on a client with redis-py's ``register_script``.

Each ``scripts/<name>.lua`` is run with ``scripts/lib.lua`` prepended (shared helpers: clock,
type checks, token bucket, promote, reap, complete, lease). Every multi-step change of the
queue happens inside one script, so it is atomic; scripts check key types before writing, so
an error never leaves a half-applied change.
"""

from __future__ import annotations

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


@cache
def source(name: str) -> str:
    """The full Lua source of script ``name`` (prelude + body)."""
    if name not in NAMES and name != "lib":
        raise KeyError(f"no queue script named {name!r}")
    # The scripts ship next to this module (package data).
    folder = Path(__file__).resolve().parent / "scripts"
    lib = (folder / "lib.lua").read_text(encoding="utf-8")
    if name == "lib":
        return lib
    return lib + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


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
