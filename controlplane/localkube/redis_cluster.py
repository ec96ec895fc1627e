"""Launch a real Redis Cluster of Debian ``redis-server`` processes on loopback, for tests.

Guarantees:

- ``masters`` masters with ``replicas`` replicas each (default 3 + 3), every one a
  :class:`~localkube.redis_server.RedisServer` on ``127.0.0.1`` with ``cluster-enabled yes``,
  the same password as ``requirepass`` and ``masterauth`` (so replicas can sync), and its own
  free client and cluster-bus ports (``cluster-port``).
- The cluster is created by ``redis-cli --cluster create ... --cluster-replicas N`` with the
  password in ``REDISCLI_AUTH`` (never on a command line). ``start()`` returns only when every
  node reports ``cluster_state:ok``, agrees on the slot map, and every replica's link to its
  master is up.
- ``close()`` SIGTERMs every server (SIGKILL after a timeout) and removes their data.
- Faults for tests: :meth:`kill` (SIGKILL one node), :meth:`pause`/:meth:`resume` (SIGSTOP /
  SIGCONT), :meth:`cut_replication` (with a paused replica: one that falls behind, as the
  master goes on accepting writes it never sends), :meth:`wait_promoted` (the cluster
  promoted a replica for a dead master's slots), :meth:`migrate_slot` (``CLUSTER SETSLOT``
  IMPORTING/MIGRATING, ``MIGRATE`` key by key with a pause, ``SETSLOT NODE``: a live migration
  that clients see as ``ASK``/``TRYAGAIN`` while it runs).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from localkube.process import free_port
from localkube.redis_server import HOST, RedisServer, RedisServerError

#: Milliseconds without a reply after which the cluster considers a master failed; a replica
#: is promoted shortly after (Redis' default is 15000; short here so failover tests are quick).
NODE_TIMEOUT_MS: Final = 1000


def _cmd(node: redis.Redis, *args: Any) -> Any:
    """One command on one node (redis-py's ``execute_command`` is untyped)."""
    return node.execute_command(*args)  # type: ignore[no-untyped-call]


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


class LocalRedisCluster:
    """A Redis Cluster of ``redis-server`` children on loopback (see the module doc)."""

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        *,
        password: str | None = None,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
        ready_timeout: float = 60.0,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.password = password or secrets.token_urlsafe(24)
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ready_timeout = ready_timeout
        self.servers: list[RedisServer] = []
        self._dir: Path | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis+cluster://:PASSWORD@127.0.0.1:PORT`` of a live node (the seed node)."""
        server = next((s for s in self.servers if s.running), None)
        if server is None:
            raise RedisServerError("the cluster is not running")
        return f"redis+cluster://:{self.password}@{HOST}:{server.port}"

    def client(self, **kwargs: Any) -> RedisCluster:
        """A new ``RedisCluster`` client seeded with every running node (decoded replies)."""
        options: dict[str, Any] = {
            "password": self.password,
            "decode_responses": True,
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
        }
        options.update(kwargs)
        nodes = [ClusterNode(HOST, s.port) for s in self.servers if s.running]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes, **options)

    def node_client(self, server: RedisServer, **kwargs: Any) -> redis.Redis:
        return server.client(socket_timeout=5.0, **kwargs)

    def server_at(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(port)

    def master_of(self, key: str) -> RedisServer:
        """The server that is master of ``key``'s slot now (asked to a live node)."""
        slot = key_slot(key.encode())
        for start, end, master, *_ in self._slots():
            if start <= slot <= end:
                return self.server_at(int(master[1]))
        raise RedisServerError(f"slot {slot} is not served")

    def node_id(self, server: RedisServer) -> str:
        return str(_cmd(self.node_client(server), "CLUSTER", "MYID"))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalRedisCluster:
        if self.servers:
            return self
        self._dir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        count = self.masters * (1 + self.replicas)
        ports = _free_ports(2 * count)
        try:
            for i in range(count):
                port, bus = ports[i], ports[count + i]
                server = RedisServer(
                    self.password,
                    port,
                    self._dir / f"node-{port}",
                    extra_config=(
                        "cluster-enabled yes",
                        f"cluster-port {bus}",
                        'cluster-config-file "nodes.conf"',
                        f"cluster-node-timeout {self.node_timeout_ms}",
                        f'masterauth "{self.password}"',
                        "appendonly no",
                    ),
                )
                self.servers.append(server)
                server.start()
            self._create()
            self.wait_healthy()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        addresses = [f"{HOST}:{s.port}" for s in self.servers]
        command = [cli, "--cluster", "create", *addresses, "--cluster-yes"]
        command += ["--cluster-replicas", str(self.replicas)]
        result = subprocess.run(
            command,
            env={**os.environ, "REDISCLI_AUTH": self.password},
            capture_output=True,
            text=True,
            timeout=self.ready_timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RedisServerError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Until every running node says ``cluster_state:ok`` with the same slot map and every
        running replica's master link is up."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        problem = "not checked"
        while time.monotonic() < deadline:
            problem = self._health_problem()
            if not problem:
                return
            time.sleep(0.1)
        raise RedisServerError(f"the Redis Cluster is not healthy: {problem}")

    def _health_problem(self) -> str:
        maps = set()
        for server in self.servers:
            if not server.running:
                continue
            try:
                node = self.node_client(server)
                info = str(_cmd(node, "CLUSTER", "INFO"))
                state = info.split("cluster_state:", 1)[-1].split()[0]
                if state != "ok":
                    return f"{server.port}: cluster_state {state}"
                role = node.info("replication")
                if role.get("role") == "slave" and role.get("master_link_status") != "up":
                    return f"{server.port}: replica link {role.get('master_link_status')}"
                slots = sorted(self._slots(node))
                if any(len(entry) - 3 < self.replicas for entry in slots):
                    return f"{server.port}: a master without its {self.replicas} replica(s)"
                maps.add(tuple((entry[0], entry[1], entry[2][1]) for entry in slots))
                node.close()
            except redis.exceptions.RedisError as exc:
                return f"{server.port}: {exc}"
        if len(maps) != 1:
            return f"{len(maps)} different slot maps"
        return ""

    def _slots(self, node: redis.Redis | None = None) -> list[Any]:
        if node is None:
            live = next(s for s in self.servers if s.running)
            node = self.node_client(live)
        raw = _cmd(node, "CLUSTER", "SLOTS")
        return [list(entry) for entry in raw]

    def close(self) -> None:
        """Stop every node and remove all data."""
        for server in self.servers:
            server.close()
        self.servers = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- faults ----------------------------------------------------------------------------

    def kill(self, server: RedisServer) -> None:
        """SIGKILL one node (a crash; it keeps no data: persistence is off)."""
        server.kill()

    def replica_of(self, master: RedisServer) -> RedisServer:
        """The (first) replica of ``master``, as ``master`` reports it."""
        info = self.node_client(master).info("replication")
        return self.server_at(int(info["slave0"]["port"]))

    def cut_replication(self, master: RedisServer) -> int:
        """Close ``master``'s links to its replicas (``CLIENT KILL TYPE replica``); a replica
        reconnects unless it is paused. Returns the number of links closed."""
        return int(_cmd(self.node_client(master), "CLIENT", "KILL", "TYPE", "replica"))

    def pause(self, server: RedisServer) -> None:
        """SIGSTOP a node: it neither answers nor replicates (a stalled or lagging replica)."""
        if server.pid is not None:
            os.kill(server.pid, signal.SIGSTOP)

    def resume(self, server: RedisServer) -> None:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)

    def wait_promoted(self, dead: RedisServer, key: str, timeout: float = 30.0) -> RedisServer:
        """Until a live node is master of ``key``'s slot instead of ``dead``; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                master = self.master_of(key)
                if master is not dead and master.running:
                    return master
            except (redis.exceptions.RedisError, RedisServerError, KeyError, StopIteration):
                pass
            time.sleep(0.05)
        raise RedisServerError(f"no replica was promoted for {key!r} within {timeout}s")

    def migrate_slot(
        self, slot: int, target: RedisServer, *, pause: float = 0.05, batch: int = 1
    ) -> int:
        """Move ``slot`` to the master ``target`` live, ``batch`` keys per MIGRATE with
        ``pause`` seconds between them; returns the number of keys moved."""
        source = self.master_of_slot(slot)
        if source is target:
            raise ValueError(f"slot {slot} is already on {target.port}")
        src, dst = self.node_client(source), self.node_client(target)
        src_id, dst_id = self.node_id(source), self.node_id(target)
        _cmd(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        _cmd(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        while True:
            keys = _cmd(src, "CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            _cmd(
                src, "MIGRATE", HOST, target.port, "", 0, 5000, "AUTH", self.password, "KEYS", *keys
            )
            moved += len(keys)
            time.sleep(pause)
        _cmd(dst, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        _cmd(src, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        for server in self.servers:
            if server.running and server not in (source, target):
                # A replica refuses SETSLOT; it learns the new owner by gossip.
                with contextlib.suppress(redis.exceptions.ResponseError):
                    _cmd(self.node_client(server), "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        src.close()
        dst.close()
        return moved

    def master_of_slot(self, slot: int) -> RedisServer:
        for start, end, master, *_ in self._slots():
            if start <= slot <= end:
                return self.server_at(int(master[1]))
        raise RedisServerError(f"slot {slot} is not served")

    def live_masters(self) -> list[RedisServer]:
        ports = {int(entry[2][1]) for entry in self._slots()}
        return [self.server_at(port) for port in sorted(ports)]
