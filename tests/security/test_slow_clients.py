"""Slow and greedy clients (issue 11, item 6), over real sockets against the running service: a client that trickles
its request head or its body, or connects and sends nothing, is cut off within the configured read timeout;
connections past the configured cap are closed at once; and a normal delivery gets through all the while."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from tests.bot.service.conftest import SECRET, Bot
from tests.fakes.deliveries import APP_TARGET_ID, pr_comment_payload
from tests.rawhttp import closed_by_server, webhook

READ_TIMEOUT_S = 1.0
BODY = json.dumps(pr_comment_payload("Looks good to me."), separators=(",", ":")).encode()

MakeBot = Callable[..., Awaitable[Bot]]


async def _connect(bot: Bot) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", urlsplit(bot.url).port)


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """Send `data` a byte at a time (10 bytes/s: a 16 KB delivery would take half an hour)."""
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(every_s)
    except ConnectionError:
        pass  # cut off


def _closed(bot: Bot, reason: str) -> float:
    return bot.service.metrics.value("http_connections_closed_total", {"reason": reason})


@pytest.mark.parametrize("part", ["head", "body", "nothing"])
async def test_a_trickling_client_is_cut_off_within_the_read_timeout(make_bot: MakeBot, part: str) -> None:
    bot = await make_bot(read_timeout_s=READ_TIMEOUT_S)
    raw = webhook(BODY, secret=SECRET.encode(), delivery="d-slow")
    head_end = raw.index(b"\r\n\r\n") + 4
    loop = asyncio.get_running_loop()
    reader, writer = await _connect(bot)
    started = loop.time()
    if part == "body":
        writer.write(raw[:head_end])  # the whole head at once, then the body a byte at a time
    slow = {"head": raw, "body": raw[head_end:], "nothing": b""}[part]
    trickler = asyncio.create_task(_trickle(writer, slow, 0.1))
    # Meanwhile the service answers everyone else.
    assert (await bot.comment("A normal comment while a client trickles.")).status == 202
    assert await closed_by_server(reader, READ_TIMEOUT_S + 3)
    cut_after = loop.time() - started
    trickler.cancel()
    writer.close()
    assert READ_TIMEOUT_S * 0.9 <= cut_after < READ_TIMEOUT_S + 1.5, f"cut after {cut_after:.2f} s"
    assert _closed(bot, "read_timeout") == 1
    assert await bot.service.store.get_delivery(APP_TARGET_ID, "d-slow") is None


async def test_connections_past_the_cap_are_closed_and_deliveries_get_through_afterwards(
        make_bot: MakeBot, caplog: pytest.LogCaptureFixture) -> None:
    bot = await make_bot(max_connections=4, read_timeout_s=READ_TIMEOUT_S)
    held = [await _connect(bot) for _ in range(4)]  # connect and send nothing, holding every slot
    await asyncio.sleep(0.2)
    extra = [await _connect(bot) for _ in range(6)]
    for reader, _ in extra:
        assert await closed_by_server(reader, 0.5), "a connection past the cap was kept open"
    assert _closed(bot, "connection_cap") == 6
    warned = [r for r in caplog.records if r.name == "bot.front" and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "TUNEBOT_MAX_CONNECTIONS" in warned[0].getMessage()  # once, not six times
    # The held connections never send a request: the read deadline frees their slots...
    for reader, _ in held:
        assert await closed_by_server(reader, READ_TIMEOUT_S + 2)
    # ...and a normal delivery gets through.
    result = await bot.comment("A normal comment after the flood.")
    assert result.status == 202
    assert await bot.service.store.get_delivery(APP_TARGET_ID, result.delivery_id) is not None
    for _, writer in held + extra:
        writer.close()
