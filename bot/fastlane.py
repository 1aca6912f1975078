"""Owns the listening socket of `tunebot serve`: plain `POST /webhook` requests are framed and answered on a lean
asyncio protocol, and every other connection is handed, bytes and all, to aiohttp.

Why: GitHub's deliveries are by far the busiest route and the only one with a latency budget (GitHub waits for the
answer, 10 s at most, and the bot promises milliseconds). Through aiohttp's request machinery one webhook cost about
as much CPU as checking and durably recording it; this lane costs a fraction of that. It is deliberately narrow:
`bot.webhook_wire.parse_head` accepts only an unambiguous head, and at the first byte of anything else (another
route, a chunked body, an odd header, HTTP/1.0) the connection, with what it has buffered from the start of that
request, becomes an ordinary aiohttp connection for the rest of its life. The checks and the durable record are
`Intake.receive`, the same code the aiohttp route runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import Callable
from typing import cast

from aiohttp import web
from aiohttp.web_runner import BaseSite

from bot.intake import Intake
from bot.webhook_wire import (
    HEAD_END,
    MAX_HEAD_BYTES,
    REQUEST_LINE,
    WebhookHead,
    may_be_webhook,
    parse_head,
    render_response,
)

log = logging.getLogger(__name__)

INTAKE_KEY: web.AppKey[Intake] = web.AppKey("intake", Intake)


class FastLane:
    """The state the lane's connections share: the intake, aiohttp's protocol factory, timeouts, open connections."""

    def __init__(self, intake: Intake, hand_over: Callable[[], asyncio.Protocol], *, max_body: int,
                 keepalive_timeout_s: float = 75.0, request_timeout_s: float = 60.0) -> None:
        self.intake = intake
        self.hand_over = hand_over
        self.max_body = max_body
        self.keepalive_timeout_s = keepalive_timeout_s  # aiohttp's default, so both lanes behave alike
        self.request_timeout_s = request_timeout_s  # a request that trickles in for longer is cut (slowloris)
        self.connections: set[WebhookProtocol] = set()
        self.closing = False
        self.handed_over = 0
        self.metrics = intake.metrics
        # Ops: a proxy that speaks HTTP/1.0 or chunks its bodies sends every delivery down the slower path.
        self.metrics.describe("webhook_connections_handed_over_total", "counter",
                              "Connections the webhook fast lane handed to aiohttp (another route or an unusual "
                              "request).")
        self._date_second = -1
        self._responses: dict[tuple[int, str, bool], bytes] = {}
        self._reaper: asyncio.TimerHandle | None = None

    def protocol(self) -> WebhookProtocol:
        if self._reaper is None and not self.closing:
            self._reaper = asyncio.get_running_loop().call_later(1.0, self._reap)
        return WebhookProtocol(self)

    def response(self, status: int, text: str, keep_alive: bool) -> bytes:
        """The response bytes, cached until the Date header's second changes."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._responses.clear()
        key = (status, text, keep_alive)
        data = self._responses.get(key)
        if data is None:
            date = email.utils.formatdate(now, usegmt=True).encode("ascii")
            data = self._responses[key] = render_response(status, text, keep_alive=keep_alive, date=date)
        return data

    def _reap(self) -> None:
        """Once a second: close connections idle past the keep-alive timeout or stuck mid-request."""
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self._reaper = None if self.closing else asyncio.get_running_loop().call_later(1.0, self._reap)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking requests: idle connections close now, a request being recorded gets its answer first."""
        self.closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        deadline = time.monotonic() + timeout_s
        while True:
            for conn in list(self.connections):
                if not conn.waiting:
                    conn.close()
            if not self.connections or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.close()


class WebhookProtocol(asyncio.Protocol):
    """One client connection while its requests are plain webhook POSTs (answered in order, one at a time)."""

    __slots__ = (
        "_advancing",
        "buffer",
        "head",
        "keep_alive",
        "lane",
        "last_active",
        "paused",
        "request_started",
        "transport",
        "waiting",
        "write_paused",
    )

    def __init__(self, lane: FastLane) -> None:
        self.lane = lane
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: WebhookHead | None = None
        self.waiting = False  # a request is being recorded; later (pipelined) requests wait in the buffer
        self.keep_alive = True
        self.paused = False  # reading from the transport is paused (see _flow)
        self.write_paused = False
        self.last_active = time.monotonic()
        self.request_started: float | None = None
        self._advancing = False

    # --- asyncio.Protocol -------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        if self.lane.closing:
            self.transport.close()
            return
        self.lane.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.request_started is None:
            self.request_started = self.last_active
        if not self.buffer and not self.waiting and self.head is None and self._whole_request(data):
            return  # the usual case: one request in one read, taken straight from `data` (no buffer copies)
        self.buffer += data
        if not self.waiting:
            self._advance()
        elif len(self.buffer) > MAX_HEAD_BYTES + self.lane.max_body:
            self._flow()  # a client pipelining faster than we record: stop reading until we catch up

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests, or the answers pile up in memory.
        self.write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._flow()

    def _flow(self) -> None:
        """Read from the client unless its answers back up or its pipelined requests outrun the recording."""
        stop = self.write_paused or (self.waiting and len(self.buffer) > MAX_HEAD_BYTES + self.lane.max_body)
        if self.transport is not None and stop != self.paused:
            self.paused = stop
            if stop:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def eof_received(self) -> bool:
        # A client that half-closes after its request still gets the answer; the transport closes after it.
        self.keep_alive = False
        if not self.waiting:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lane.connections.discard(self)
        self.transport = None

    # --- requests ---------------------------------------------------------------------------------------------------
    def _advance(self) -> None:
        """Frame and start as many buffered requests as can be answered in turn."""
        self._advancing = True
        try:
            while self.transport is not None and not self.waiting and self.buffer:
                head = self.head
                if head is None:
                    if not may_be_webhook(self.buffer):
                        self._hand_over()
                        return
                    end = self.buffer.find(HEAD_END)
                    if end < 0:
                        if len(self.buffer) > MAX_HEAD_BYTES:
                            self._hand_over()
                        return
                    head = parse_head(bytes(self.buffer[: end + 4]))
                    if head is None:
                        self._hand_over()
                        return
                    if head.content_length > self.lane.max_body:
                        # The body is never read: answer and close, or its bytes would be taken for a request.
                        self.keep_alive = False
                        self._reply(*self.lane.intake.too_large())
                        return
                    self.head = head
                size = head.head_bytes + head.content_length
                if len(self.buffer) < size:
                    return
                body = bytes(self.buffer[head.head_bytes:size])
                del self.buffer[:size]
                self.head = None
                self._start(head, body)
        finally:
            self._advancing = False

    def _start(self, head: WebhookHead, body: bytes) -> None:
        """Hand one framed request to the intake; the connection waits for its answer (called with `_advancing`)."""
        self.keep_alive = head.keep_alive
        self.waiting = True
        self.lane.intake.receive(body, signature=head.signature, event=head.event, delivery_id=head.delivery_id,
                                 target_id=head.target_id, reply=self._reply)

    def _whole_request(self, data: bytes) -> bool:
        """Start the request if `data` is exactly one complete plain webhook POST; False leaves it to `_advance`."""
        end = data.find(HEAD_END, 0, MAX_HEAD_BYTES)
        if end < 0 or not data.startswith(REQUEST_LINE):
            return False
        head = parse_head(data[: end + 4])
        if (head is None or head.head_bytes + head.content_length != len(data)
                or head.content_length > self.lane.max_body):
            return False
        self._advancing = True  # an answer given at once (401, 400) must not re-enter _advance
        try:
            self._start(head, data[head.head_bytes:])
        finally:
            self._advancing = False
        return True

    def _reply(self, status: int, text: str) -> None:
        self.waiting = False
        self.request_started = time.monotonic() if self.buffer else None
        self.last_active = time.monotonic()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep_alive = self.keep_alive and not self.lane.closing
        transport.write(self.lane.response(status, text, keep_alive))
        if not keep_alive:
            self.close()
            return
        if self.paused:
            self._flow()
        if not self._advancing:
            self._advance()

    def _hand_over(self) -> None:
        """From the start of the current request on, this connection is aiohttp's."""
        transport = self.transport
        assert transport is not None
        self.lane.connections.discard(self)
        self.lane.handed_over += 1
        self.lane.metrics.inc("webhook_connections_handed_over_total")
        self.transport = None
        data, self.buffer = bytes(self.buffer), bytearray()
        protocol = self.lane.hand_over()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.paused:  # aiohttp does its own flow control from here on
            transport.resume_reading()
        if self.write_paused:
            protocol.pause_writing()
        if data:
            protocol.data_received(data)

    def check_timeouts(self, now: float) -> None:
        if self.waiting:
            return
        if self.request_started is not None:
            if now - self.request_started > self.lane.request_timeout_s:
                log.info("closing a webhook connection: request incomplete after %.0f s", now - self.request_started)
                self.close()
        elif now - self.last_active > self.lane.keepalive_timeout_s:
            self.close()

    def close(self) -> None:
        self.lane.connections.discard(self)
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class FastLaneSite(BaseSite):
    """A TCP site whose connections start in the fast lane (see the module docstring); one per `tunebot serve`."""

    __slots__ = ("_host", "_max_body", "_port", "_reuse_address", "lane")

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, max_body: int, reuse_address: bool = True,
                 backlog: int = 1024) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._max_body = max_body
        self._reuse_address = reuse_address
        self.lane: FastLane | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port} (webhook fast lane)"

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None, "the site is not started"
        server = cast(asyncio.Server, self._server)  # any loop's server: uvloop's does not subclass asyncio's
        return int(server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        await super().start()
        runner = self._runner
        assert isinstance(runner, web.AppRunner) and runner.server is not None
        server = runner.server
        self.lane = lane = FastLane(runner.app[INTAKE_KEY], lambda: server(), max_body=self._max_body)
        self._server = await asyncio.get_running_loop().create_server(
            lane.protocol, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address)

    async def stop(self) -> None:
        await super().stop()  # stops listening
        if self.lane is not None:
            with contextlib.suppress(Exception):
                await self.lane.close()
