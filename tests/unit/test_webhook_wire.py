"""bot.webhook_wire: which request heads the webhook fast lane may frame itself, and the responses it renders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.webhook_wire import MAX_HEAD_BYTES, REQUEST_LINE, may_be_webhook, parse_head, render_response

SIG = "sha256=" + "ab" * 32
BASE = [
    ("Host", "bot.example"),
    ("Content-Type", "application/json"),
    ("User-Agent", "GitHub-Hookshot/ede37db"),
    ("X-GitHub-Event", "issue_comment"),
    ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ("X-GitHub-Hook-Installation-Target-ID", "29310"),
    ("X-Hub-Signature-256", SIG),
    ("Content-Length", "1234"),
]


def head(headers: list[tuple[str, str]] = BASE, request_line: bytes = REQUEST_LINE) -> bytes:
    return request_line + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers) + b"\r\n"


def replace(name: str, value: str | None) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in BASE if k.lower() != name.lower()]
    return out if value is None else [*out, (name, value)]


def test_a_plain_github_delivery_head_is_parsed() -> None:
    h = parse_head(head())
    assert h is not None
    assert (h.content_length, h.signature, h.event, h.delivery_id, h.target_id, h.keep_alive) == (
        1234, SIG, "issue_comment", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "29310", True)
    assert h.head_bytes == len(head())


def test_header_names_are_case_insensitive_and_values_trimmed() -> None:
    h = parse_head(head([("x-github-event", "\t push  "), ("CONTENT-LENGTH", " 7"), ("x-GitHub-delivery", "d1")]))
    assert h is not None
    assert (h.event, h.content_length, h.delivery_id, h.signature, h.target_id) == ("push", 7, "d1", None, None)


@pytest.mark.parametrize("value, keep_alive", [("close", False), ("keep-alive", True), ("Keep-Alive, Close", False),
                                               ("te, keep-alive", True)])
def test_connection_header_decides_keep_alive(value: str, keep_alive: bool) -> None:
    h = parse_head(head(replace("Connection", value)))
    assert h is not None and h.keep_alive is keep_alive


def test_missing_github_headers_are_left_for_the_intake_to_refuse() -> None:
    h = parse_head(head([("Content-Length", "2")]))
    assert h is not None and (h.event, h.delivery_id, h.signature) == ("", "", None)


@pytest.mark.parametrize("request_line", [
    b"GET /webhook HTTP/1.1\r\n", b"POST /webhook HTTP/1.0\r\n", b"POST /webhook/ HTTP/1.1\r\n",
    b"POST /webhook?x=1 HTTP/1.1\r\n", b"post /webhook HTTP/1.1\r\n", b"POST  /webhook HTTP/1.1\r\n",
    b"POST /webhook HTTP/1.1\n",
])
def test_anything_but_the_exact_request_line_is_handed_over(request_line: bytes) -> None:
    assert parse_head(head(request_line=request_line)) is None


@pytest.mark.parametrize("headers", [
    replace("Content-Length", None),  # no length: chunked or empty, aiohttp frames it
    replace("Content-Length", "+5"),
    replace("Content-Length", "-1"),
    replace("Content-Length", "0x10"),
    replace("Content-Length", "5 5"),
    replace("Content-Length", "1" * 16),
    [*BASE, ("Content-Length", "1234")],  # repeated, even with the same value
    [*BASE, ("Transfer-Encoding", "chunked")],
    [*BASE, ("transfer-encoding", "identity")],
    [*BASE, ("Expect", "100-continue")],
    [*BASE, ("Upgrade", "websocket")],
    [*BASE, ("Content-Encoding", "gzip")],
    replace("Connection", "Upgrade"),
    [*BASE, ("X-Hub-Signature-256", SIG)],  # which copy would count?
    [*BASE, ("X-GitHub-Delivery", "other")],
    replace("X-GitHub-Delivery", "caf\xe9"),  # not ASCII
])
def test_ambiguous_or_special_heads_are_handed_over(headers: list[tuple[str, str]]) -> None:
    assert parse_head(head(headers)) is None


@pytest.mark.parametrize("raw", [
    REQUEST_LINE + b"Content-Length: 2\r\n folded\r\n\r\n",  # obs-fold
    REQUEST_LINE + b"Content-Length : 2\r\n\r\n",  # whitespace before the colon
    REQUEST_LINE + b"Content-Length: 2\r\nX-A: a\x00b\r\n\r\n",  # NUL in a value
    REQUEST_LINE + b"Content-Length: 2\r\nX-A: a\x7fb\r\n\r\n",  # DEL in a value
    REQUEST_LINE + b"Content-Length: 2\r\nX A: b\r\n\r\n",  # not a token
    REQUEST_LINE + b"Content-Length: 2\nX-A: b\r\n\r\n",  # bare LF
    REQUEST_LINE + b"Content-Length: 2\r\nX-A: b\rc\r\n\r\n",  # bare CR
    REQUEST_LINE + b"Content-Length: 2\r\n: novalue\r\n\r\n",  # empty name
    REQUEST_LINE + b"Content-Length: 2\r\n",  # not a complete head
    REQUEST_LINE + b"Content-Length: 2\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",  # too long
])
def test_malformed_heads_are_handed_over(raw: bytes) -> None:
    assert parse_head(raw) is None


def test_a_head_without_headers_has_no_length_and_is_handed_over() -> None:
    assert parse_head(REQUEST_LINE + b"\r\n") is None


def test_may_be_webhook_decides_on_the_first_bytes() -> None:
    assert may_be_webhook(b"")
    assert may_be_webhook(b"PO")
    assert may_be_webhook(REQUEST_LINE + b"Host: x\r\n")
    assert may_be_webhook(bytearray(b"POST /web"))
    assert not may_be_webhook(b"G")
    assert not may_be_webhook(b"POST /webhooks")
    assert not may_be_webhook(b"POST /webhook HTTP/1.0")


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=12)
_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parse_head_never_raises(tail: bytes) -> None:
    for raw in (tail, REQUEST_LINE + tail, REQUEST_LINE + tail + b"\r\n\r\n"):
        parse_head(raw)
        may_be_webhook(raw)


@settings(max_examples=200, deadline=None)
@given(event=_value, delivery=_value, signature=_value, length=st.integers(0, 10**12), close=st.booleans(),
       extra=st.lists(st.tuples(_token.map(lambda t: "X-Extra-" + t), _value), max_size=5))
def test_well_formed_heads_round_trip(event: str, delivery: str, signature: str, length: int, close: bool,
                                      extra: list[tuple[str, str]]) -> None:
    headers = [("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery), ("X-Hub-Signature-256", signature),
               ("Content-Length", str(length)), *extra]
    if close:
        headers.append(("Connection", "close"))
    h = parse_head(head(headers))
    assert h is not None
    assert (h.event, h.delivery_id, h.signature, h.content_length, h.keep_alive) == (
        event, delivery, signature, length, not close)


def test_render_response() -> None:
    date = b"Sat, 28 Nov 2026 06:00:00 GMT"
    raw = render_response(202, "accepted", keep_alive=True, date=date)
    status, _, rest = raw.partition(b"\r\n")
    head_, _, body = rest.partition(b"\r\n\r\n")
    assert status == b"HTTP/1.1 202 Accepted"
    headers = dict(line.split(b": ", 1) for line in head_.split(b"\r\n"))
    assert headers[b"Content-Length"] == b"8" and body == b"accepted"
    assert headers[b"Content-Type"] == b"text/plain; charset=utf-8" and headers[b"Date"] == date
    assert b"Connection" not in headers
    closing = render_response(413, "payload too large (limit 10 bytes)", keep_alive=False, date=date)
    assert closing.startswith(b"HTTP/1.1 413 Payload Too Large\r\n") and b"\r\nConnection: close\r\n" in closing
    assert closing.endswith(b"\r\n\r\npayload too large (limit 10 bytes)")
