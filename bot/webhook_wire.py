"""Decides whether a raw HTTP/1.1 request head is the one plain shape of webhook POST that the fast lane may answer
itself (anything else goes to aiohttp), and renders the fast lane's responses.

Pure functions over bytes, no I/O. The rule is "when in doubt, hand it over": the fast lane frames a request only
when its head is unambiguous (request line exactly `POST /webhook HTTP/1.1`, header names that are RFC 9110 tokens,
values without control characters, exactly one all-digit Content-Length, no Transfer-Encoding, Expect or Upgrade,
no repeated GitHub header). Every other request, including chunked or malformed ones, is parsed by aiohttp's own
(llhttp) parser, so request framing never depends on this module guessing right about an odd request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REQUEST_LINE = b"POST /webhook HTTP/1.1\r\n"
HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 16384  # a longer head is not a plain webhook POST: aiohttp answers it (its limit is 8190 per line)

# RFC 9110 §5.1 field names are tokens; §5.5 field values are VCHAR / obs-text with SP and HTAB inside. A header
# line that starts with whitespace (obs-fold, RFC 9112 §5.2) or has whitespace before the colon does not match.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_HEADER_BLOCK = re.compile(rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*\r\n")

# Headers the fast lane reads. A repeated one is ambiguous (which copy counts?): aiohttp decides instead.
_SINGLE = frozenset({b"content-length", b"x-hub-signature-256", b"x-github-event", b"x-github-delivery",
                     b"x-github-hook-installation-target-id", b"connection"})
# Headers that change how the body is framed or the connection is used: never handled by the fast lane.
_HAND_OVER = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"content-encoding"})
_MAX_CONTENT_LENGTH_DIGITS = 15


@dataclass(frozen=True, slots=True)
class WebhookHead:
    """What the fast lane needs from a plain webhook POST head."""

    head_bytes: int  # length of the head, request line and final CRLF included
    content_length: int
    signature: str | None
    event: str
    delivery_id: str
    target_id: str | None
    keep_alive: bool


def may_be_webhook(buffer: bytes | bytearray) -> bool:
    """False as soon as the first bytes of a request show that it is not `POST /webhook HTTP/1.1`."""
    n = min(len(buffer), len(REQUEST_LINE))
    return buffer[:n] == REQUEST_LINE[:n]


def parse_head(head: bytes) -> WebhookHead | None:
    """The head (request line to the blank line, inclusive) of a plain webhook POST, or None: hand it to aiohttp."""
    if not head.startswith(REQUEST_LINE) or not head.endswith(HEAD_END) or len(head) > MAX_HEAD_BYTES:
        return None
    block = head[len(REQUEST_LINE):]
    if _HEADER_BLOCK.fullmatch(block) is None:
        return None
    found: dict[bytes, bytes] = {}
    for line in block[:-4].split(b"\r\n") if len(block) > 2 else ():
        name, _, value = line.partition(b":")
        key = name.lower()
        if key in _HAND_OVER or (key in _SINGLE and key in found):
            return None
        found[key] = value.strip(b" \t")
    length = found.get(b"content-length")
    if length is None or not length.isdigit() or len(length) > _MAX_CONTENT_LENGTH_DIGITS:
        return None  # a POST without a length is chunked or empty: aiohttp frames it
    try:
        signature, event, delivery, target = (
            None if v is None else v.decode("ascii")
            for v in (found.get(b"x-hub-signature-256"), found.get(b"x-github-event", b""),
                      found.get(b"x-github-delivery", b""), found.get(b"x-github-hook-installation-target-id")))
    except UnicodeDecodeError:
        return None  # aiohttp decodes non-ASCII header values its own way; let it
    connection = found.get(b"connection", b"").lower()
    keep_alive = True
    if connection:
        options = {o.strip() for o in connection.split(b",")}
        if b"upgrade" in options:
            return None
        keep_alive = b"close" not in options
    return WebhookHead(head_bytes=len(head), content_length=int(length), signature=signature, event=event or "",
                       delivery_id=delivery or "", target_id=target or None, keep_alive=keep_alive)


_REASONS = {200: b"OK", 202: b"Accepted", 400: b"Bad Request", 401: b"Unauthorized", 413: b"Payload Too Large",
            503: b"Service Unavailable"}


def render_response(status: int, text: str, *, keep_alive: bool, date: bytes) -> bytes:
    """A complete HTTP/1.1 response with a short plain-text body (what aiohttp's `web.Response(text=...)` sends)."""
    body = text.encode("utf-8")
    reason = _REASONS.get(status, b"Unknown")
    return b"".join((
        b"HTTP/1.1 %d %s\r\n" % (status, reason),
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Date: %s\r\n" % date,
        b"Server: tunebot\r\n",
        b"" if keep_alive else b"Connection: close\r\n",
        b"\r\n",
        body,
    ))
