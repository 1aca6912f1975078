"""Raw HTTP/1.1 over a socket, for the tests that need byte-level control a client library does not give: the exact
bytes of a GitHub delivery, pipelining, requests in pieces, and reading one response off a stream."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tests.fakes.deliveries import delivery_headers


def webhook(body: bytes, *, secret: bytes | None, delivery: str | None = None, path: str = "/webhook",
            extra: dict[str, str] | None = None, drop: tuple[str, ...] = (), chunked: bool = False) -> bytes:
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


async def read_response(reader: asyncio.StreamReader, timeout: float = 10) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout)
    return Response(status, headers, body)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `timeout` seconds; whatever else it sends
    first is read and dropped."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True
