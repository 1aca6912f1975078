"""Malformed raw HTTP from unauthenticated clients (issue 17, item 5): each probe is answered 400 and closed, counted
in /metrics, and logged in one quiet line: no ERROR record, no traceback (aiohttp alone logs a traceback for each)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from tests.bot.service.conftest import Bot
from tests.rawhttp import closed_by_server

PROBES = {
    "not a request line": b"GARBAGE\r\n\r\n",
    "unknown method": b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n",
    "header without a colon": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    "space before the colon": b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}",
    "negative length": b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "two lengths": b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "request line too long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header too long": b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * 9000 + b"\r\n\r\n",
    "control bytes in a header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    "bad chunk size": b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "TLS to the plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),
    "binary garbage": b"\x00\xff" * 64 + b"\r\n\r\n",
}


async def test_malformed_requests_are_counted_and_logged_quietly(make_bot: Callable[..., Awaitable[Bot]],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    bot = await make_bot()
    caplog.set_level(logging.DEBUG)
    port = urlsplit(bot.url).port
    for name, probe in PROBES.items():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(probe)
        answer = await asyncio.wait_for(reader.read(64), 5)
        assert re.match(rb"HTTP/1\.[01] 400 ", answer), (name, answer)
        assert await closed_by_server(reader, 5), name
        writer.close()
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or (r.exc_info and r.levelno >= logging.INFO)]
    assert loud == [], [f"{r.levelname} {r.name}: {r.getMessage()}" for r in loud]
    async with bot.session.get(f"{bot.url}/metrics") as resp:
        metrics = await resp.text()
    found = re.search(r'^tunebot_http_connections_closed_total\{reason="malformed"\} (\S+)$', metrics, re.M)
    assert found is not None and float(found.group(1)) == len(PROBES), metrics
