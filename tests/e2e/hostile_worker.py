"""A hostile tenant's per-item command (run by ``tests/e2e/test_e2e_tenants.py`` in a worker pod).

It gathers every Redis credential it can find (its own env, which the operator fills from the
Secret in its namespace, and the ``STOLEN_*`` env: another of its QueueJobs' Secret, read through
the API with the tenant's rights) and tries to reach the victim's queue ``VICTIM_QUEUE`` and the
server itself. One line per attempt on stderr: ``ATTEMPT|<credentials>|<what>|<answer>``; the
answer starts with ``REFUSED NOPERM``, ``REFUSED WRONGPASS``, ``REFUSED NOAUTH`` or ``ALLOWED``.
``CONTROL`` lines show that the credentials do work on the tenant's own queue. Exits 0.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis

from workqueue.connect import client_from_url
from workqueue.models import Lease
from workqueue.redisqueue import LeaseQueue

URL = os.environ["QUEUEJOB_REDIS_URL"]
VICTIM = os.environ["VICTIM_QUEUE"]
OWN = os.environ["QUEUEJOB_QUEUE"]
V = f"wq:{{{VICTIM}}}:"


def answer(exc: BaseException) -> str:
    full = " ".join(str(exc).split())
    low = full.lower()
    text = full[:110]
    if isinstance(exc, redis.exceptions.NoPermissionError) or "no permissions" in low:
        return f"REFUSED NOPERM ({text})"
    if "can't access" in low or "can't run" in low or "noperm" in low:
        return f"REFUSED NOPERM ({text})"
    if "invalid username-password" in low or "wrongpass" in low:
        return f"REFUSED WRONGPASS ({text})"
    if "authentication required" in low or "noauth" in low or "already authenticated" in low:
        return f"REFUSED NOAUTH ({text})"
    return f"ERROR {type(exc).__name__} ({text})"


def attempt(creds: str, what: str, call: Callable[[], Any], *, control: bool = False) -> None:
    try:
        result = call()
    except Exception as exc:  # every refusal is the answer printed
        line = answer(exc)
    else:
        line = f"ALLOWED {str(result)[:110]!r}"
    kind = "CONTROL" if control else "ATTEMPT"
    print(f"{kind}|{creds}|{what}|{line}", file=sys.stderr, flush=True)


def client(username: str | None, password: str | None) -> Any:
    return client_from_url(
        URL, username=username, password=password, decode_responses=True, socket_timeout=5
    )


def single_node(username: str | None, password: str | None) -> redis.Redis:
    """A plain connection to the URL's node (pub/sub, AUTH)."""
    parts = urlsplit(URL)
    return redis.Redis(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        username=username,
        password=password,
        decode_responses=True,
        socket_timeout=5,
    )


def attacks(creds: str, username: str, password: str, own: str) -> None:
    c = client(username, password)
    attempt(creds, "PING (control)", c.ping, control=True)
    attempt(creds, "own queue stats (control)", lambda: LeaseQueue(c, own).stats(), control=True)
    victim = LeaseQueue(c, VICTIM)
    forged = Lease("salary-alice", "forged.1:evil", 1, "evil", 0.0)
    tries: list[tuple[str, Callable[[], Any]]] = [
        (
            "read B's pending items (LRANGE)",
            lambda: c.execute_command("LRANGE", V + "pending", 0, -1),
        ),
        ("count B's pending items (LLEN)", lambda: c.execute_command("LLEN", V + "pending")),
        (
            "mark B's item done by hand (HSET succeeded)",
            lambda: c.execute_command("HSET", V + "succeeded", "salary-bob", "1"),
        ),
        ("read B's leases (HGETALL holders)", lambda: c.execute_command("HGETALL", V + "holders")),
        ("lease B's items (queue script)", lambda: victim.lease("evil", n=2)),
        ("complete B's item (queue script)", lambda: victim.complete(forged)),
        ("fail B's item (queue script)", lambda: victim.fail(forged, "sabotage")),
        ("redrive B's dead letters (queue script)", lambda: victim.redrive()),
        ("delete B's keys (DEL)", lambda: c.execute_command("DEL", V + "pending", V + "seen")),
        ("KEYS *", lambda: c.execute_command("KEYS", "*")),
        ("SCAN 0", lambda: c.execute_command("SCAN", 0)),
        ("FLUSHALL", lambda: c.execute_command("FLUSHALL")),
        ("CONFIG GET requirepass", lambda: c.execute_command("CONFIG", "GET", "requirepass")),
        ("ACL LIST", lambda: c.execute_command("ACL", "LIST")),
        ("ACL GETUSER default", lambda: c.execute_command("ACL", "GETUSER", "default")),
        (
            "ACL SETUSER self ~* +@all (escalate)",
            lambda: c.execute_command("ACL", "SETUSER", username, "~*", "&*", "+@all"),
        ),
        ("SCRIPT FLUSH", lambda: c.execute_command("SCRIPT", "FLUSH")),
        ("CLIENT LIST", lambda: c.execute_command("CLIENT", "LIST")),
        (
            "EVAL naming B's key",
            lambda: c.eval("return redis.call('HGETALL', KEYS[1])", 1, V + "holders"),
        ),
        (
            "EVAL hiding B's key behind its own",
            lambda: c.eval(
                f"return redis.call('HGETALL', '{V}holders')", 1, f"wq:{{{own}}}:holders"
            ),
        ),
    ]
    for what, call in tries:
        attempt(creds, what, call)
    sub = single_node(username, password)
    attempt(creds, "SUBSCRIBE B's channel", lambda: sub.execute_command("SUBSCRIBE", V + "events"))
    sub.close()
    sub = single_node(username, password)
    attempt(creds, "PSUBSCRIBE *", lambda: sub.execute_command("PSUBSCRIBE", "*"))
    sub.close()
    sub = single_node(username, password)
    attempt(
        creds, "PUBLISH on B's channel", lambda: sub.execute_command("PUBLISH", V + "events", "x")
    )
    sub.close()
    attempt(creds, "AUTH default with this password", lambda: single_node(None, password).ping())
    attempt(
        creds,
        "AUTH as B's queue user with this password",
        lambda: single_node(f"wq-worker:{VICTIM}", password).ping(),
    )
    c.close()


def main() -> int:
    env = os.environ
    found = [
        ("env", env.get("QUEUEJOB_REDIS_USERNAME"), env.get("QUEUEJOB_REDIS_PASSWORD"), OWN),
        ("api", env.get("STOLEN_USERNAME"), env.get("STOLEN_PASSWORD"), env.get("STOLEN_QUEUE")),
    ]
    for creds, username, password, own in found:
        print(f"CREDENTIALS|{creds}|user={username}|password set={bool(password)}", file=sys.stderr)
        if username and password and own:
            attacks(creds, username, password, own)
    attempt("none", "PING without credentials", lambda: single_node(None, None).ping())
    return 0


if __name__ == "__main__":
    sys.exit(main())
