"""The webhook fast lane over real sockets: plain webhook POSTs are answered by the lane, everything else by aiohttp
(also mid-connection), framing edge cases, limits and timeouts, and that both lanes answer alike."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from bot.app import _new_delivery
from bot.fastlane import INTAKE_KEY, FastLane, FastLaneSite
from bot.intake import Intake
from bot.metrics import Metrics
from bot.store import Store
from tests.fakes.deliveries import delivery_headers, pr_comment_payload

SECRET = b"lane-secret"
MAX_BODY = 64 * 1024
BODY = json.dumps(pr_comment_payload("Looks good to me."), separators=(",", ":")).encode()


def webhook(body: bytes = BODY, *, delivery: str | None = None, secret: bytes | None = SECRET,
            path: str = "/webhook", extra: dict[str, str] | None = None, drop: tuple[str, ...] = (),
            chunked: bool = False) -> bytes:
    """The exact bytes of a GitHub delivery request."""
    headers = {"Host": "bot.test", **delivery_headers("issue_comment", body, secret, delivery)}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        headers["Content-Length"] = str(len(body))
        payload = body
    headers.update(extra or {})
    for name in drop:
        headers.pop(name, None)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + payload


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: bot.test\r\n\r\n"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return Response(status, headers, body)


@dataclass
class Lane:
    port: int
    store: Store
    metrics: Metrics
    site: FastLaneSite
    runner: web.AppRunner
    db: Path

    @property
    def lane(self) -> FastLane:
        assert self.site.lane is not None
        return self.site.lane

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
        return self.metrics.value("webhook_requests_total", {"outcome": name})

    def stored(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.db) as conn:
            return [(r[0], r[1]) for r in conn.execute("SELECT delivery_id, state FROM deliveries ORDER BY id")]

    async def body_of(self, delivery_id: str) -> bytes:
        d = await self.store.get_delivery("29310", delivery_id)
        assert d is not None, f"{delivery_id} not stored"
        return d.body


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    db = tmp_path / "lane.db"
    store = await Store.open(db)
    metrics = Metrics()
    intake = Intake(secret=SECRET, record_batch=store.record_deliveries, make_delivery=_new_delivery,
                    metrics=metrics, wake=lambda: None, max_body_bytes=MAX_BODY)
    app = web.Application(client_max_size=MAX_BODY)
    app[INTAKE_KEY] = intake

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "path": request.path})

    app.router.add_post("/webhook", intake.handle)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = FastLaneSite(runner, "127.0.0.1", 0, max_body=MAX_BODY)
    await site.start()
    yield Lane(site.port, store, metrics, site, runner, db)
    await runner.cleanup()
    await store.close()


async def test_a_plain_delivery_is_answered_by_the_lane_and_recorded(lane: Lane) -> None:
    [resp] = await lane.exchange(webhook(delivery="d-1"))
    assert (resp.status, resp.body) == (202, b"accepted")
    assert resp.headers["content-type"] == "text/plain; charset=utf-8" and "date" in resp.headers
    assert lane.stored() == [("d-1", "pending")]
    assert await lane.body_of("d-1") == BODY
    assert lane.lane.handed_over == 0 and lane.outcome("accepted") == 1


async def test_pipelined_and_sequential_requests_on_one_connection_are_answered_in_order(lane: Lane) -> None:
    bad = webhook(delivery="d-bad", secret=b"wrong")
    responses = await lane.exchange(webhook(delivery="d-1"), bad, webhook(delivery="d-2"), webhook(delivery="d-1"))
    assert [(r.status, r.body) for r in responses] == [
        (202, b"accepted"), (401, b"bad signature"), (202, b"accepted"), (200, b"duplicate delivery")]
    reader, writer = await lane.connect()
    for i in range(3):
        writer.write(webhook(delivery=f"seq-{i}"))
        assert (await read_response(reader)).status == 202
    writer.close()
    assert [d for d, _ in lane.stored()] == ["d-1", "d-2", "seq-0", "seq-1", "seq-2"]
    assert lane.lane.handed_over == 0


async def test_a_request_that_arrives_in_pieces_is_put_together(lane: Lane) -> None:
    raw = webhook(delivery="d-split")
    reader, writer = await lane.connect()
    cuts = [0, 3, 30, raw.index(b"\r\n\r\n") + 2, raw.index(b"\r\n\r\n") + 4, len(raw) - 100, len(raw) - 1, len(raw)]
    for a, b in itertools.pairwise(cuts):
        writer.write(raw[a:b])
        await writer.drain()
        await asyncio.sleep(0.02)
    resp = await read_response(reader)
    writer.close()
    assert resp.status == 202 and await lane.body_of("d-split") == BODY
    assert lane.lane.handed_over == 0


async def test_other_routes_are_handed_to_aiohttp(lane: Lane) -> None:
    [resp] = await lane.exchange(GET_HEALTHZ)
    assert resp.status == 200 and json.loads(resp.body) == {"ok": True, "path": "/healthz"}
    [resp] = await lane.exchange(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.status == 404
    assert lane.lane.handed_over == 2
    assert lane.metrics.value("webhook_connections_handed_over_total") == 2


async def test_a_connection_is_handed_over_mid_stream_and_stays_with_aiohttp(lane: Lane) -> None:
    responses = await lane.exchange(webhook(delivery="d-fast"), GET_HEALTHZ, webhook(delivery="d-slow"))
    assert [r.status for r in responses] == [202, 200, 202]
    assert "tunebot" in responses[0].headers["server"] and "aiohttp" in responses[2].headers["server"]
    assert lane.stored() == [("d-fast", "pending"), ("d-slow", "pending")]
    assert await lane.body_of("d-slow") == BODY and lane.lane.handed_over == 1


async def test_a_chunked_delivery_is_framed_by_aiohttp(lane: Lane) -> None:
    [resp] = await lane.exchange(webhook(delivery="d-chunked", chunked=True))
    assert resp.status == 202 and await lane.body_of("d-chunked") == BODY
    assert lane.lane.handed_over == 1


@pytest.mark.parametrize("extra", [
    {"Transfer-Encoding": "chunked"},  # with a Content-Length too: request smuggling territory
    {"Content-Length": "10, 12"},
])
async def test_ambiguous_framing_is_refused_by_aiohttp_and_stores_nothing(lane: Lane, extra: dict[str, str]) -> None:
    raw = webhook(delivery="d-ambiguous")
    head, _, body = raw.partition(b"\r\n\r\n")
    head += b"".join(f"\r\n{k}: {v}".encode() for k, v in extra.items())
    reader, writer = await lane.connect()
    writer.write(head + b"\r\n\r\n" + body)
    resp = await read_response(reader)
    writer.close()
    assert resp.status == 400
    assert lane.stored() == [] and lane.lane.handed_over == 1


async def test_an_oversized_body_is_refused_unread_and_the_connection_closed(lane: Lane) -> None:
    big = b"x" * (MAX_BODY + 1)
    raw = webhook(big, delivery="d-big")
    reader, writer = await lane.connect()
    writer.write(raw[: raw.index(b"\r\n\r\n") + 4])  # the head only: the answer must not wait for the body
    resp = await read_response(reader)
    assert resp.status == 413 and resp.headers.get("connection") == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()
    assert lane.outcome("too_large") == 1 and lane.stored() == []


async def test_refusals_store_nothing(lane: Lane) -> None:
    responses = await lane.exchange(
        webhook(delivery="d-unsigned", secret=None),
        webhook(delivery="d-forged", secret=b"not-the-secret"),
        webhook(delivery="d-noevent", drop=("X-GitHub-Event",)),
        webhook(delivery="x" * 101),
    )
    assert [r.status for r in responses] == [401, 401, 400, 400]
    assert lane.stored() == [] and lane.outcome("bad_signature") == 2 and lane.outcome("bad_request") == 2


async def test_connection_close_and_half_close_are_honoured(lane: Lane) -> None:
    reader, writer = await lane.connect()
    writer.write(webhook(delivery="d-close", extra={"Connection": "close"}))
    resp = await read_response(reader)
    assert resp.status == 202 and resp.headers.get("connection") == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()

    reader, writer = await lane.connect()
    writer.write(webhook(delivery="d-half"))
    writer.write_eof()  # the client is done sending but still reads the answer
    resp = await read_response(reader)
    assert resp.status == 202 and await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert [d for d, _ in lane.stored()] == ["d-close", "d-half"]


@pytest.mark.parametrize("variant", ["good", "forged", "unsigned", "no-event", "no-delivery", "long-id", "duplicate"])
async def test_both_lanes_answer_alike(lane: Lane, variant: str) -> None:
    """The same delivery through the lane and through aiohttp (a query string sends it there) gets the same answer."""
    async def send(path: str, tag: str) -> Response:
        kwargs: dict[str, object] = {"delivery": f"{variant}-{tag}", "path": path}
        if variant == "forged":
            kwargs["secret"] = b"nope"
        elif variant == "unsigned":
            kwargs["secret"] = None
        elif variant == "no-event":
            kwargs["drop"] = ("X-GitHub-Event",)
        elif variant == "no-delivery":
            kwargs["drop"] = ("X-GitHub-Delivery",)
        elif variant == "long-id":
            kwargs["delivery"] = tag * 101
        if variant == "duplicate":
            await lane.exchange(webhook(delivery=f"dup-{tag}"))
            kwargs["delivery"] = f"dup-{tag}"
        [resp] = await lane.exchange(webhook(**kwargs))  # type: ignore[arg-type]
        return resp

    fast = await send("/webhook", "f")
    handed_before = lane.lane.handed_over
    slow = await send("/webhook?via=aiohttp", "s")
    assert lane.lane.handed_over == handed_before + 1
    assert (fast.status, fast.body) == (slow.status, slow.body)
    assert fast.headers["content-type"] == slow.headers["content-type"]


async def test_stalled_and_idle_connections_are_closed(lane: Lane) -> None:
    lane.lane.request_timeout_s = 0.3
    lane.lane.keepalive_timeout_s = 0.3
    stalled_reader, stalled = await lane.connect()
    stalled.write(webhook(delivery="d-stalled")[:40])  # a head that never completes (slowloris)
    idle_reader, idle = await lane.connect()
    idle.write(webhook(delivery="d-idle"))
    assert (await read_response(idle_reader)).status == 202
    assert await asyncio.wait_for(stalled_reader.read(), 5) == b""
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    stalled.close()
    idle.close()
    assert lane.stored() == [("d-idle", "pending")]


async def test_shutdown_closes_idle_connections(lane: Lane) -> None:
    reader, writer = await lane.connect()
    writer.write(webhook(delivery="d-before"))
    assert (await read_response(reader)).status == 202
    await lane.site.stop()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    with pytest.raises(OSError):
        await lane.connect()


async def test_a_client_that_does_not_read_its_answers_is_not_read_either(lane: Lane) -> None:
    """Forged requests pipelined by a client that never reads: the answers must not pile up in the server."""
    forged = webhook(b"{}", delivery="d-forged", secret=b"not-the-secret")
    n = 40_000  # ~7 MB of 401 answers: more than the loopback socket buffers hold
    reader, writer = await lane.connect()
    sender = asyncio.create_task(_send_all(writer, forged * n))
    deadline = asyncio.get_running_loop().time() + 20
    while not any(c.write_paused for c in lane.lane.connections):
        assert asyncio.get_running_loop().time() < deadline, "the server never paused"
        await asyncio.sleep(0.05)
    [conn] = lane.lane.connections
    assert conn.paused and conn.transport is not None and conn.transport.get_write_buffer_size() < 1 << 20
    answered = 0
    while answered < n:  # now read everything: the server resumes and answers every request
        resp = await read_response(reader)
        assert resp.status == 401
        answered += 1
    await sender
    writer.close()
    assert lane.outcome("bad_signature") == n and lane.stored() == []


async def _send_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def test_while_shutting_down_both_lanes_answer_503_and_store_nothing(lane: Lane) -> None:
    lane.lane.intake.accepting = False  # what Intake.drain() sets first
    responses = await lane.exchange(webhook(delivery="d-late"), webhook(delivery="d-late2", path="/webhook?via=x"))
    assert [(r.status, r.body) for r in responses] == [(503, b"shutting down")] * 2
    assert lane.stored() == [] and lane.outcome("shutting_down") == 2
