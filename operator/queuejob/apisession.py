"""kopf's HTTP session to the API server, with a bound on its requests in flight.

kopf opens its session with no limit on connections (``aiohttp.TCPConnector(limit=0)``), and it
patches, posts Events and runs the handlers of every object at once: 600 QueueJobs created
together had 127 TLS connections open, each with asyncio's 256 KiB read buffer (33 MiB of the
operator's memory at the peak), and the API server got every request at the same moment.

:func:`limited_session` builds the same session (the credentials, TLS and proxy of kopf's own
login) with a :class:`RequestLimit` middleware. Guarantees:

- at most ``limit`` requests are in flight at once, watch streams apart: a request waits for a
  slot (first come, first served), and gives it back only once its response body is read (its
  connection is back in the pool), so the connections that requests use are bounded too;
- a watch request (``watch=true``, a stream that stays open) never takes or waits for a slot:
  an operator that watches many namespaces (two watches per namespace, an unknown number with
  globs) cannot fill the slots with streams and stall its own requests;
- ``limit`` 0 leaves requests unbounded (kopf's behaviour).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable

import aiohttp
import kopf
import yarl

Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]


def is_watch(url: yarl.URL) -> bool:
    """True for the URL of a watch stream (``?watch=true`` or ``?watch=1``), which stays open."""
    return url.query.get("watch", "").lower() in ("true", "1")


class RequestLimit:
    """aiohttp client middleware: at most ``limit`` requests in flight, watches apart (see the
    module doc). ``waiting`` and ``in_flight`` count the requests now waiting and holding a
    slot. Used from one event loop."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.waiting = 0
        self.in_flight = 0
        self._slots: asyncio.Semaphore | None = None

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: Handler
    ) -> aiohttp.ClientResponse:
        if is_watch(request.url):
            return await handler(request)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            response = await handler(request)
            await response.read()  # the connection goes back to the pool before the slot
            return response
        finally:
            self.in_flight -= 1
            self._slots.release()


def limited_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """A session for kopf as its own login would make from ``info``, with a
    :class:`RequestLimit` of ``limit`` (0: no middleware). Call it in the event loop."""
    with warnings.catch_warnings():  # aiohttp warns of basic auth; kopf silences it the same way
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        auth = info.as_aiohttp_basic_auth()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        auth=auth,
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        middlewares=(RequestLimit(limit),) if limit > 0 else (),
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        priority=info.priority,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
    )
