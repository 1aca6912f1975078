"""Owns the listening socket of `tunebot serve`: aiohttp's own HTTP protocol, with a cap on open connections, a
deadline for each request to arrive whole, and malformed requests counted instead of logged with a traceback.

aiohttp alone holds a client that trickles a request head in for up to its keep-alive timeout and one that trickles
a body for as long as it likes; the deadline here runs from a connection's opening (or a request's first byte) until
its handler has the whole body, and a connection that misses it is closed. Idle keep-alive connections are
aiohttp's (`keepalive_timeout`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import cast

from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestHandler

from bot.config import Config
from bot.metrics import Metrics

log = logging.getLogger(__name__)

CLOSED = "http_connections_closed_total"


class Connection(RequestHandler):
    """One client connection: aiohttp's protocol, plus the request deadline and the connection cap."""

    __slots__ = ("_deadline", "_refused", "_site", "half_closed", "request_body")

    def __init__(self, site: FrontSite, manager: web.Server) -> None:
        super().__init__(manager, loop=asyncio.get_running_loop(), keepalive_timeout=site.keepalive_timeout_s,
                         lingering_time=site.read_timeout_s, access_log=None)  # type: ignore[arg-type]  # None: off
        self._site = site
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self.request_body: StreamReader | None = None  # set by `track_requests` while a handler runs
        self.half_closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        site = self._site
        if len(site.connections) >= site.max_connections:
            self._refused = True
            site.metrics.inc(CLOSED, labels={"reason": "connection_cap"})
            if not site.saturated:  # once per episode: the metric counts every refusal
                site.saturated = True
                log.warning("%d connections open: closing new ones until some end (TUNEBOT_MAX_CONNECTIONS)",
                            site.max_connections)
            transport.close()
            return
        site.connections.add(self)
        self._arm()  # the first request must come within the deadline too: an idle socket holds a slot
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._site.connections.discard(self)
        self._site.saturated = len(self._site.connections) >= self._site.max_connections
        self.disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:  # the first byte of a request
            self._arm()
        super().data_received(data)

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio's contract: True keeps the socket open
        # The client is done sending but may wait for its answer (aiohttp alone would close at once and lose it):
        # `track_requests` closes the connection after the answer, the deadline if there is nothing to answer.
        self.half_closed = True
        if self._deadline is None:
            self._arm()
        return True

    def _arm(self) -> None:
        self._deadline = self._loop.call_later(self._site.read_timeout_s, self._expire)

    def disarm(self) -> None:
        """The request in hand has been received whole; the next one's deadline starts at its first byte."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.request_body is not None and self.request_body.is_eof():
            return  # received whole: its handler is at work, and may take as long as it needs
        if not self.half_closed:
            self._site.metrics.inc(CLOSED, labels={"reason": "read_timeout"})
            log.debug("closed a connection from %s: request not received within %g s", self.peername,
                      self._site.read_timeout_s)
        self.force_close()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        client_gone = isinstance(exc, ConnectionError) and self.transport is None
        if status != 400 and not client_gone:  # 400: aiohttp's parser refused the request
            return super().handle_error(request, status, exc, message)  # ours: logged with its traceback
        # The client's doing (malformed HTTP, or it left or was cut off mid-request): unauthenticated input must
        # not fill the log. The metric counts it; the debug log says what it was.
        if client_gone:
            log.debug("client %s left mid-request: %s", request.remote, exc)
        else:
            self._site.metrics.inc(CLOSED, labels={"reason": "malformed"})
            log.debug("malformed HTTP request from %s: %.200r", request.remote, message or str(exc))
        resp = web.Response(status=status, text=message or HTTPStatus(status).phrase)
        resp.force_close()
        return resp


@web.middleware
async def track_requests(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Tells the connection which request its handler works on, so the deadline spares a request received whole;
    closes a half-closed connection after its answer."""
    conn = request.protocol
    if not isinstance(conn, Connection):  # served some other way (a plain TCPSite in a test)
        return await handler(request)
    conn.request_body = request.content
    try:
        resp = await handler(request)
    finally:
        conn.request_body = None
        conn.disarm()
    if conn.half_closed:
        resp.force_close()  # the client is done sending: close once this answer is out
    return resp


class FrontSite(web.BaseSite):
    """A TCP site whose connections are `Connection`s; one per `tunebot serve`. Needs `track_requests` among the
    app's middlewares."""

    __slots__ = ("_host", "_port", "connections", "keepalive_timeout_s", "max_connections", "metrics",
                 "read_timeout_s", "saturated")

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, metrics: Metrics, read_timeout_s: float,
                 keepalive_timeout_s: float, max_connections: int, backlog: int = 1024) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port = host, port
        self.metrics = metrics
        self.read_timeout_s = read_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.max_connections = max_connections
        self.connections: set[Connection] = set()
        self.saturated = False  # at the cap (warned once)
        metrics.describe(CLOSED, "counter", "Connections closed early: malformed request, request not received within "
                                            "the read timeout, or over the connection cap.")

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None, "the site is not started"
        return int(cast(asyncio.Server, self._server).sockets[0].getsockname()[1])

    async def start(self) -> None:
        await super().start()
        manager = self._runner.server
        assert manager is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Connection(self, manager), self._host, self._port, backlog=self._backlog, reuse_address=True)


async def start_site(runner: web.AppRunner, config: Config, metrics: Metrics, *, host: str | None = None,
                     port: int | None = None) -> FrontSite:
    """The configured site, listening (`host`/`port` override the configuration's)."""
    site = FrontSite(runner, config.host if host is None else host, config.port if port is None else port,
                     metrics=metrics, read_timeout_s=config.read_timeout_s,
                     keepalive_timeout_s=config.keepalive_timeout_s, max_connections=config.max_connections)
    await site.start()
    return site
