"""Per-queue Redis ACL users: a worker that holds one can use its own queue and nothing else.

- :func:`username`: the user of queue ``name`` (``wq-worker:<name>``), derived from the name only.
- :func:`rules`: the full ``ACL SETUSER`` rule list of that user.
- :func:`apply_user`: create or redefine the user on every node (one server, or every master
  *and* replica of a Redis Cluster: ACLs are not replicated), and load the function library
  its workers call (:func:`load_library`).
- :func:`missing_nodes`: the nodes where the user does not exist (after a node restart without
  an ACL file, a new replica, ...).
- :func:`remove_user`: ``ACL DELUSER`` on every node (which also disconnects its clients).

Guarantees of the rules (Redis >= 7.0):

- ``reset`` first, so applying them again yields exactly these rules, whatever the user had
  before (idempotent; an older definition never leaves a permission behind);
- keys: only ``wq:{<name>}:*``, the queue's hash-tagged keys (glob characters of the name are
  escaped, so a name with ``*`` or ``?`` never widens the pattern);
- channels: only ``wq:{<name>}:*`` (pub/sub notifications of that queue);
- commands: ``-@all`` plus :data:`COMMANDS`: the queue scripts (EVALSHA, EVAL, SCRIPT
  LOAD/EXISTS) and functions (FCALL; never FUNCTION LOAD: a library is shared by every user of
  the server, so only the operator loads it, see :func:`apply_user`), the data commands those
  scripts and the worker's client call, the connection handshake of redis-py (HELLO, AUTH,
  CLIENT SETNAME/ID; its CLIENT SETINFO is refused and redis-py ignores that), PING, WAIT, and
  what a Redis Cluster client needs to follow the slot map (CLUSTER SLOTS/SHARDS/NODES/MYID,
  ASKING, READONLY, COMMAND). Never FLUSHALL, FLUSHDB, KEYS, SCAN, CONFIG, ACL (except
  WHOAMI), SCRIPT FLUSH/KILL, FUNCTION, DEBUG, SHUTDOWN, MONITOR, CLIENT LIST/KILL, ...
- Redis checks every command a Lua script runs against the calling user, keys included: a
  script that names another queue's key (declared or not) fails with NOPERM.
- the password is set with ``>``: one argument, never parsed as further rules.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any, TypeAlias

import redis
from redis.cluster import ClusterNode, RedisCluster

from workqueue.keys import QueueKeys
from workqueue.scripts import library

#: Prefix of every per-queue user name.
USER_PREFIX = "wq-worker:"

#: Commands a worker's user may run (lower case, ``parent|sub`` for subcommands).
COMMANDS = (
    # connection and handshake
    "auth",
    "hello",
    "ping",
    "echo",
    "select",
    "client|setname",
    "client|id",
    "acl|whoami",
    "reset",
    "quit",
    # scripts: the queue's Lua path
    "evalsha",
    "eval",
    "evalsha_ro",
    "eval_ro",
    "script|load",
    "script|exists",
    "fcall",
    # replication barrier (QUEUEJOB_REDIS_WAIT_REPLICAS)
    "wait",
    # Redis Cluster: the slot map and redirections
    "cluster|slots",
    "cluster|shards",
    "cluster|nodes",
    "cluster|myid",
    "cluster|info",
    "asking",
    "readonly",
    "readwrite",
    "command",
    # data commands run by the queue's scripts and the worker's client, on its own keys only
    "time",
    "type",
    "exists",
    "del",
    "hdel",
    "hexists",
    "hget",
    "hgetall",
    "hincrby",
    "hlen",
    "hmget",
    "hscan",
    "hset",
    "hsetnx",
    "llen",
    "lpop",
    "lpush",
    "rpush",
    "sadd",
    "scard",
    "sismember",
    "smismember",
    "zadd",
    "zcard",
    "zrange",
    "zrangebyscore",
    "zrem",
    "zscore",
    # the queue's own pub/sub channels
    "publish",
    "spublish",
    "subscribe",
    "ssubscribe",
    "psubscribe",
    "unsubscribe",
    "sunsubscribe",
    "punsubscribe",
)

_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def username(queue: str) -> str:
    """The ACL user of queue ``queue`` (validated as a queue name)."""
    QueueKeys(queue)
    return USER_PREFIX + queue


def new_password() -> str:
    """A fresh random password (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def key_pattern(queue: str) -> str:
    """The glob matching exactly the keys of ``queue`` (``wq:{<name>}:*``, name escaped)."""
    return QueueKeys(queue).prefix.translate(_GLOB) + "*"


def rules(queue: str, password: str) -> list[str]:
    """The ``ACL SETUSER`` rules (after the user name) of ``queue``'s user (see module doc)."""
    if not password:
        raise ValueError("an ACL user needs a non-empty password")
    pattern = key_pattern(queue)
    return [
        "reset",
        "on",
        ">" + password,
        "~" + pattern,
        "resetchannels",
        "&" + pattern,
        "-@all",
        *("+" + command for command in COMMANDS),
    ]


#: A node to run an ACL command on: a cluster node redis-py knows, a direct client of one it
#: does not know (yet), or None for the one server.
Node: TypeAlias = "ClusterNode | redis.Redis | None"


def live_addresses(cluster_nodes: str) -> set[str]:
    """``host:port`` of every node a ``CLUSTER NODES`` reply lists as reachable (not ``fail``,
    ``noaddr`` or still in ``handshake``)."""
    found = set()
    for line in cluster_nodes.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        flags = set(fields[2].split(","))
        if flags & {"fail", "noaddr", "handshake"}:
            continue
        found.add(fields[1].split("@", 1)[0])
    return found


@contextlib.contextmanager
def nodes(client: redis.Redis | RedisCluster) -> Iterator[list[Node]]:
    """Every node the user must exist on: the one server (``[None]``), or every reachable master
    and replica of a cluster as ``CLUSTER NODES`` lists them.

    Not redis-py's node list: it comes from ``CLUSTER SLOTS``, which leaves out a replica that
    has not replicated anything yet (a new cluster, a replica just attached), and it is read only
    when the client starts and after errors. A user missing on a replica stays unnoticed until
    that replica is promoted, and then the workers cannot log in. Nodes redis-py does not know
    get a direct client for the block, closed after it; a node flagged ``fail`` is skipped (the
    status refresh finds it without the user once it is back).
    """
    if not isinstance(client, RedisCluster):
        yield [None]
        return
    known = {node.name: node for node in client.get_nodes()}  # type: ignore[no-untyped-call]
    reply = _cluster_nodes(client, list(known.values()))
    kwargs = client.nodes_manager.connection_kwargs  # what redis-py's own node clients get
    direct: list[redis.Redis] = []
    found: list[Node] = []
    for address in sorted(live_addresses(reply)):
        if address in known:
            found.append(known[address])
            continue
        host, _, port = address.rpartition(":")
        direct.append(redis.Redis(host=host, port=int(port), **kwargs))
        found.append(direct[-1])
    try:
        yield found
    finally:
        for node in direct:
            node.close()


def _cluster_nodes(client: RedisCluster, known: list[ClusterNode]) -> str:
    """``CLUSTER NODES`` from the first known node that answers (the default node first)."""
    default = client.get_default_node()  # type: ignore[no-untyped-call]
    first: redis.exceptions.RedisError | None = None
    for node in [default, *(n for n in known if n is not default)]:
        try:
            return str(client.execute_command("CLUSTER", "NODES", target_nodes=node))  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisError as exc:
            first = first or exc
    raise first or redis.exceptions.ConnectionError("no cluster node known")


def node_name(node: Node) -> str:
    """``host:port`` of ``node`` (``""`` for the one server)."""
    if node is None:
        return ""
    if isinstance(node, redis.Redis):
        kwargs = node.get_connection_kwargs()
        return f"{kwargs.get('host')}:{kwargs.get('port')}"
    return str(node.name)


def _run(client: redis.Redis | RedisCluster, node: Node, *args: Any) -> Any:
    if node is None:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    if isinstance(node, redis.Redis):
        return node.execute_command(*args)  # type: ignore[no-untyped-call]
    return client.execute_command(*args, target_nodes=node)  # type: ignore[no-untyped-call]


def _each_node(client: redis.Redis | RedisCluster, *args: Any) -> list[Any]:
    """Run ``args`` on every node; all nodes are tried, then the first error is raised."""
    results: list[Any] = []
    first: redis.exceptions.RedisError | None = None
    with nodes(client) as targets:
        for node in targets:
            try:
                results.append(_run(client, node, *args))
            except redis.exceptions.RedisError as exc:
                first = first or exc
    if first is not None:
        raise first
    return results


def apply_user(client: redis.Redis | RedisCluster, queue: str, password: str) -> str:
    """Create or redefine ``queue``'s user with ``password`` on every node; its name.

    ``client`` must be allowed to run ACL SETUSER (the operator's admin user). Every node is
    tried even if one fails; then the first error is raised (redis-py's), so a caller retrying
    until success leaves the user on every node.
    """
    name = username(queue)
    _each_node(client, "ACL", "SETUSER", name, *rules(queue, password))
    load_library(client)
    return name


def load_library(client: redis.Redis | RedisCluster) -> int:
    """Load the worker calls' function library (``scripts.library``) on every node that lacks
    it; the number of nodes that now hold it.

    Best effort, never raises: a replica refuses (READONLY; it gets the library by replication),
    a Redis whose operator user may not run FUNCTION LOAD refuses (NOPERM), a node may be down.
    Workers then run the same code as scripts (``LeaseQueue``), so nothing but speed depends
    on it. Only this (admin) side loads: a worker's user cannot, so no tenant can define or
    replace the code other tenants' workers call.
    """
    code = library().code
    loaded = 0
    with nodes(client) as targets:
        for node in targets:
            try:
                _run(client, node, "FUNCTION", "LOAD", code)
                loaded += 1
            except redis.exceptions.ResponseError as exc:
                loaded += "already exists" in str(exc)
            except redis.exceptions.RedisError:
                continue
    return loaded


def missing_nodes(client: redis.Redis | RedisCluster, queue: str) -> list[str]:
    """Addresses (``host:port``, or ``""`` for the one server) of the nodes lacking the user.

    Unreachable nodes raise (redis-py's error): a node that cannot answer is not "missing".
    """
    name = username(queue)
    missing: list[str] = []
    with nodes(client) as targets:
        for node in targets:
            if _run(client, node, "ACL", "GETUSER", name) is None:
                missing.append(node_name(node))
    return missing


def remove_user(client: redis.Redis | RedisCluster, queue: str) -> int:
    """Delete ``queue``'s user on every node (absent: fine); the number of nodes that had it.

    Redis disconnects the clients authenticated as that user.
    """
    removed = _each_node(client, "ACL", "DELUSER", username(queue))
    return sum(int(r) for r in removed)
