"""``queuejob.apisession``: kopf's session bounds its requests in flight, never its watches.

Each case runs a real aiohttp server on loopback (plain HTTP) that counts the requests it is
serving at once and the connections they come on, and a session from
:func:`queuejob.apisession.limited_session` (the operator's login builds the same) against it.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import kopf
import pytest
import yarl
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from queuejob.apisession import RequestLimit, is_watch, limited_session
from queuejob.handlers import login

LOGGER = logging.getLogger(__name__)


class Server:
    """Counts concurrent plain requests and their connections; watch requests stream until
    :attr:`release_watches` is set."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.now = 0
        self.peak = 0
        self.served = 0
        self.peers: set[tuple[str, int]] = set()
        self.watching = 0
        self.release_watches = asyncio.Event()
        self.authorizations: set[str] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            stream = web.StreamResponse()
            await stream.prepare(request)
            await stream.write(b'{"type": "ADDED"}\n')
            self.watching += 1
            await self.release_watches.wait()
            self.watching -= 1
            await stream.write_eof()
            return stream
        self.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        self.authorizations.add(request.headers.get("Authorization", ""))
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.now -= 1
        self.served += 1
        return web.json_response({"path": request.path, "padding": "x" * 100_000})


async def serve(server: Server) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.release_watches.set()
        await runner.cleanup()


def run(delay: float, body: Callable[[Server, str], Awaitable[None]]) -> Server:
    server = Server(delay)

    async def main() -> None:
        async for url in serve(server):
            await body(server, url)

    asyncio.run(main())
    return server


async def get_all(session: aiohttp.ClientSession, url: str, count: int) -> None:
    """``count`` GETs at once on ``session``, each body read."""

    async def one(i: int) -> None:
        async with session.get(f"{url}/api/{i}") as response:
            await response.read()

    await asyncio.gather(*(one(i) for i in range(count)))


def session_for(url: str, limit: int) -> kopf.AiohttpSession:
    return limited_session(kopf.ConnectionInfo(server=url), limit)


def test_requests_in_flight_and_their_connections_are_bounded() -> None:
    async def body(server: Server, url: str) -> None:
        context = session_for(url, 4)
        async with context.aiohttp_session as session:

            async def one(i: int) -> None:
                async with session.get(f"{url}/api/{i}") as response:
                    assert (await response.json())["path"] == f"/api/{i}"

            await asyncio.gather(*(one(i) for i in range(40)))

    server = run(0.02, body)
    assert server.served == 40
    assert server.peak == 4
    assert len(server.peers) <= 4


def test_without_a_limit_the_requests_all_run_at_once() -> None:
    async def body(server: Server, url: str) -> None:
        async with session_for(url, 0).aiohttp_session as session:
            await get_all(session, url, 12)

    server = run(0.2, body)
    assert server.peak == 12


def test_open_watches_never_hold_the_slots_of_requests() -> None:
    """Three watch streams stay open on a session limited to one request; requests still
    go through, one at a time."""

    async def body(server: Server, url: str) -> None:
        async with session_for(url, 1).aiohttp_session as session:
            watches = [
                await session.get(f"{url}/apis/x/v1/queuejobs", params={"watch": "true"})
                for _ in range(3)
            ]
            for watch in watches:
                assert await watch.content.readline() == b'{"type": "ADDED"}\n'
            assert server.watching == 3

            async def one(i: int) -> int:
                async with session.get(f"{url}/api/{i}") as response:
                    return response.status

            statuses = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(5))), 10)
            assert statuses == [200] * 5
            assert server.watching == 3  # the streams were open all along
            server.release_watches.set()
            for watch in watches:
                await watch.read()
                watch.release()

    server = run(0.01, body)
    assert server.peak == 1
    assert server.served == 5


def test_a_cancelled_waiter_gives_back_nothing_it_did_not_take() -> None:
    """Requests cancelled while waiting for a slot leave the limit as it was: the next
    requests still run ``limit`` at a time."""
    limit = RequestLimit(2)

    async def body(server: Server, url: str) -> None:
        async with aiohttp.ClientSession(middlewares=(limit,)) as session:

            async def one(i: int) -> None:
                async with session.get(f"{url}/api/{i}") as response:
                    await response.read()

            tasks = [asyncio.create_task(one(i)) for i in range(6)]
            await asyncio.sleep(0.05)
            assert (limit.in_flight, limit.waiting) == (2, 4)
            for task in tasks[2:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert (limit.in_flight, limit.waiting) == (0, 0)
            server.peak = 0
            await asyncio.gather(*(one(i) for i in range(6)))

    server = run(0.2, body)
    assert server.peak == 2


@settings(max_examples=25, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=6),
    requests=st.integers(min_value=0, max_value=20),
    watches=st.integers(min_value=0, max_value=4),
)
def test_peak_is_the_limit_or_the_requests_whichever_is_fewer(
    limit: int, requests: int, watches: int
) -> None:
    async def body(server: Server, url: str) -> None:
        async with session_for(url, limit).aiohttp_session as session:
            streams = [
                await session.get(f"{url}/w", params={"watch": "true"}) for _ in range(watches)
            ]
            await asyncio.wait_for(get_all(session, url, requests), 20)
            server.release_watches.set()
            for stream in streams:
                await stream.read()
                stream.release()

    server = run(0.01, body)
    assert server.served == requests
    assert server.peak == min(limit, requests)


@pytest.mark.parametrize(
    ("query", "watch"),
    [("watch=true", True), ("watch=1", True), ("watch=false", False), ("", False)],
)
def test_is_watch(query: str, watch: bool) -> None:
    assert is_watch(yarl.URL(f"http://127.0.0.1/apis/x/v1/y?{query}")) is watch


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        RequestLimit(0)


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "%s"}}]
users: [{name: u, user: {token: the-token}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: team-a}}]
current-context: x
"""


def test_the_operators_login_gives_kopf_its_credentials_in_a_limited_session(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login handler finds the kubeconfig as kopf would, and the session it returns sends
    its token and lets QUEUEJOB_API_REQUESTS requests be in flight."""
    monkeypatch.setenv("QUEUEJOB_API_REQUESTS", "3")

    async def body(server: Server, url: str) -> None:
        config = tmp_path / "kubeconfig"
        config.write_text(KUBECONFIG % url)
        monkeypatch.setenv("KUBECONFIG", str(config))
        context = await login.login(settings=kopf.OperatorSettings(), logger=LOGGER)
        assert context is not None
        assert (context.server, context.default_namespace) == (url, "team-a")
        async with context.aiohttp_session as session:
            await get_all(session, url, 10)

    server = run(0.05, body)
    assert server.peak == 3
    assert server.authorizations == {"Bearer the-token"}


def test_without_credentials_the_login_finds_none(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    found = asyncio.run(login.login(settings=kopf.OperatorSettings(), logger=LOGGER))
    assert found is None
