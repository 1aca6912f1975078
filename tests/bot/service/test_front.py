"""The front door of `tunebot serve` over real sockets (bot.front serving the real app): plain, pipelined, split and
chunked deliveries, other routes on the same connection, framing refusals, the size cap, connection handling,
shutdown, and a client that never reads its answers."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.app import INTAKE_KEY
from bot.front import FrontSite
from tests.bot.service.conftest import SECRET, Bot
from tests.fakes.deliveries import APP_TARGET_ID, pr_comment_payload
from tests.rawhttp import GET_HEALTHZ, Response, closed_by_server, read_response
from tests.rawhttp import webhook as raw_webhook

BODY = json.dumps(pr_comment_payload("Looks good to me."), separators=(",", ":")).encode()
MAX_BODY = 64 * 1024


def webhook(body: bytes = BODY, *, secret: bytes | None = SECRET.encode(), **kw: Any) -> bytes:
    return raw_webhook(body, secret=secret, **kw)


class Door:
    """Raw connections to a running bot, and what it stored."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.port = urlsplit(bot.url).port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def exchange(self, *requests: bytes) -> list[Response]:
        """Send the requests on one connection (all in one write) and read as many responses."""
        reader, writer = await self.connect()
        try:
            writer.write(b"".join(requests))
            return [await read_response(reader) for _ in requests]
        finally:
            writer.close()

    def outcome(self, name: str) -> float:
        return self.bot.service.metrics.value("webhook_requests_total", {"outcome": name})

    def stored(self) -> list[str]:
        """Every delivery id in the database, in the order recorded (whatever the workers did with them since)."""
        path = self.bot.config.database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            return [r[0] for r in conn.execute("SELECT delivery_id FROM deliveries ORDER BY id")]

    async def body_of(self, delivery_id: str) -> bytes:
        d = await self.bot.service.store.get_delivery(APP_TARGET_ID, delivery_id)
        assert d is not None, f"{delivery_id} not stored"
        return d.body

    @property
    def site(self) -> FrontSite:
        [site] = self.bot.runner.sites
        assert isinstance(site, FrontSite)
        return site


@pytest.fixture
async def door(make_bot: Callable[..., Awaitable[Bot]]) -> Door:
    return Door(await make_bot(max_body_bytes=MAX_BODY, read_timeout_s=2.0))


async def test_a_plain_delivery_is_answered_and_recorded(door: Door) -> None:
    [resp] = await door.exchange(webhook(delivery="d-1"))
    assert (resp.status, resp.body) == (202, b"accepted")
    assert resp.headers["content-type"] == "text/plain; charset=utf-8" and "date" in resp.headers
    assert door.stored() == ["d-1"] and await door.body_of("d-1") == BODY
    assert door.outcome("accepted") == 1


async def test_pipelined_and_sequential_requests_on_one_connection_are_answered_in_order(door: Door) -> None:
    bad = webhook(delivery="d-bad", secret=b"wrong")
    responses = await door.exchange(webhook(delivery="d-1"), bad, webhook(delivery="d-2"), webhook(delivery="d-1"))
    assert [(r.status, r.body) for r in responses] == [
        (202, b"accepted"), (401, b"bad signature"), (202, b"accepted"), (200, b"duplicate delivery")]
    reader, writer = await door.connect()
    for i in range(3):
        writer.write(webhook(delivery=f"seq-{i}"))
        assert (await read_response(reader)).status == 202
    writer.close()
    assert door.stored() == ["d-1", "d-2", "seq-0", "seq-1", "seq-2"]


async def test_a_request_that_arrives_in_pieces_is_put_together(door: Door) -> None:
    raw = webhook(delivery="d-split")
    reader, writer = await door.connect()
    cuts = [0, 3, 30, raw.index(b"\r\n\r\n") + 2, raw.index(b"\r\n\r\n") + 4, len(raw) - 100, len(raw) - 1, len(raw)]
    for a, b in itertools.pairwise(cuts):
        writer.write(raw[a:b])
        await writer.drain()
        await asyncio.sleep(0.02)
    resp = await read_response(reader)
    writer.close()
    assert resp.status == 202 and await door.body_of("d-split") == BODY


async def test_other_routes_share_the_connection_with_deliveries(door: Door) -> None:
    responses = await door.exchange(webhook(delivery="d-a"), GET_HEALTHZ,
                                    b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", webhook(delivery="d-b"))
    assert [r.status for r in responses] == [202, 200, 404, 202]
    assert json.loads(responses[1].body)["ok"] is True
    assert door.stored() == ["d-a", "d-b"] and await door.body_of("d-b") == BODY


async def test_a_chunked_delivery_is_recorded_whole(door: Door) -> None:
    [resp] = await door.exchange(webhook(delivery="d-chunked", chunked=True))
    assert resp.status == 202 and await door.body_of("d-chunked") == BODY


@pytest.mark.parametrize("extra", [
    {"Transfer-Encoding": "chunked"},  # with a Content-Length too: request smuggling territory
    {"Content-Length": "10, 12"},
])
async def test_ambiguous_framing_is_refused_and_stores_nothing(door: Door, extra: dict[str, str]) -> None:
    raw = webhook(delivery="d-ambiguous")
    head, _, body = raw.partition(b"\r\n\r\n")
    head += b"".join(f"\r\n{k}: {v}".encode() for k, v in extra.items())
    reader, writer = await door.connect()
    writer.write(head + b"\r\n\r\n" + body)
    resp = await read_response(reader)
    writer.close()
    assert resp.status == 400 and door.stored() == []


async def test_an_oversized_body_is_refused_unread_and_the_connection_closed(door: Door) -> None:
    raw = webhook(b"x" * (MAX_BODY + 1), delivery="d-big")
    reader, writer = await door.connect()
    writer.write(raw[: raw.index(b"\r\n\r\n") + 4])  # the head only: the answer must not wait for the body
    resp = await read_response(reader)
    assert resp.status == 413 and resp.headers.get("connection") == "close" and b"65536" in resp.body
    assert await closed_by_server(reader, 5)
    writer.close()
    assert door.outcome("too_large") == 1 and door.stored() == []


async def test_refusals_store_nothing(door: Door) -> None:
    responses = await door.exchange(
        webhook(delivery="d-unsigned", secret=None),
        webhook(delivery="d-forged", secret=b"not-the-secret"),
        webhook(delivery="d-noevent", drop=("X-GitHub-Event",)),
        webhook(delivery="x" * 101),
    )
    assert [r.status for r in responses] == [401, 401, 400, 400]
    assert door.stored() == [] and door.outcome("bad_signature") == 2 and door.outcome("bad_request") == 2


async def test_connection_close_and_half_close_are_honoured(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(webhook(delivery="d-close", extra={"Connection": "close"}))
    resp = await read_response(reader)
    assert resp.status == 202 and resp.headers.get("connection") == "close"
    assert await closed_by_server(reader, 5)
    writer.close()

    reader, writer = await door.connect()
    writer.write(webhook(delivery="d-half"))
    writer.write_eof()  # the client is done sending but still reads the answer
    resp = await read_response(reader)
    assert resp.status == 202 and await closed_by_server(reader, 5)
    writer.close()

    reader, writer = await door.connect()
    writer.write_eof()  # nothing to answer: closed by the read deadline
    assert await closed_by_server(reader, 5)
    writer.close()
    assert door.stored() == ["d-close", "d-half"]


async def test_shutdown_closes_idle_connections_and_stops_listening(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(webhook(delivery="d-before"))
    assert (await read_response(reader)).status == 202
    await door.bot.runner.cleanup()  # SIGTERM's path
    assert await closed_by_server(reader, 5)
    writer.close()
    with pytest.raises(OSError):
        await door.connect()
    assert door.stored() == ["d-before"]


async def test_while_shutting_down_deliveries_get_503_and_nothing_is_stored(door: Door) -> None:
    door.bot.runner.app[INTAKE_KEY].accepting = False  # what Intake.drain() sets first
    responses = await door.exchange(webhook(delivery="d-late"), webhook(delivery="d-late2", chunked=True))
    assert [(r.status, r.body) for r in responses] == [(503, b"shutting down")] * 2
    assert door.stored() == [] and door.outcome("shutting_down") == 2


async def test_a_client_that_does_not_read_its_answers_is_not_read_either(door: Door) -> None:
    """Forged requests pipelined by a client that never reads: the answers must not pile up in the server."""
    forged = webhook(b"{}", delivery="d-forged", secret=b"not-the-secret")
    n = 30_000  # ~5 MB of 401 answers: more than the loopback socket buffers hold
    reader, writer = await door.connect()
    sender = asyncio.create_task(_send_all(writer, forged * n))
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1.0)
    buffered, deadline = -1, loop.time() + 30
    while True:  # wait until the server stops answering (its socket buffers are full, it waits for us)
        answered = door.outcome("bad_signature")
        await asyncio.sleep(0.5)
        assert loop.time() < deadline, "the server never stopped"
        if door.outcome("bad_signature") == answered:
            break
    [conn] = door.site.connections
    assert conn.transport is not None
    buffered = conn.transport.get_write_buffer_size()
    assert answered < n and buffered < 1 << 20, (answered, buffered)
    got = 0
    while got < n:  # now read everything: the server resumes and answers every request
        resp = await read_response(reader, timeout=30)
        assert resp.status == 401
        got += 1
    await sender
    writer.close()
    assert door.outcome("bad_signature") == n and door.stored() == []


async def _send_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
