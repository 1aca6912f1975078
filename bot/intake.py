"""Owns the webhook front door: verify the signature over the raw body, cap the size, record the delivery durably
(deduplicated on app + delivery id), answer 202 in milliseconds, and wake the workers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.batching import GroupCommitter
from bot.metrics import Metrics

log = logging.getLogger(__name__)

RecordBatch = Callable[[list[Any]], Awaitable[list[bool]]]
MakeDelivery = Callable[..., Any]
Reply = Callable[[int, str], None]

MAX_DELIVERY_ID = 100  # the store's column width; GitHub's GUIDs are 36 characters
BUSY_WINDOW_S = 0.01  # "webhooks are arriving": one within this long (see Runtime.flood_share)


class Signature:
    """X-Hub-Signature-256 checks with the key schedule done once (`bot.github.sansio.verify_signature` semantics:
    `sha256=<hex>`, compared in constant time; an empty secret accepts nothing). Per request it costs one copy of a
    keyed HMAC state and the hash of the body."""

    def __init__(self, secret: bytes) -> None:
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256) if secret else None

    def verify(self, body: bytes, header: str | None) -> bool:
        if self._keyed is None or not header:
            return False
        scheme, sep, received = header.strip().partition("=")
        if not sep or scheme.lower() != "sha256" or len(received) != 64:
            return False
        mac = self._keyed.copy()
        mac.update(body)
        return hmac.compare_digest(mac.hexdigest().encode("ascii"), received.lower().encode("ascii", errors="replace"))


class Intake:
    """The webhook's checks and durable record (`receive`), its aiohttp handler (`handle`), and the group committer
    that records deliveries."""

    def __init__(
        self,
        *,
        secret: bytes,
        record_batch: RecordBatch,
        make_delivery: MakeDelivery,
        metrics: Metrics,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.time,
        max_body_bytes: int | None = None,
    ) -> None:
        self._signature = Signature(secret)
        self._committer: GroupCommitter[Any, bool] = GroupCommitter(record_batch)
        self._make = make_delivery
        self._metrics = metrics
        self._wake = wake
        self._clock = clock
        self._max_body = max_body_bytes
        self._last_seen = -1.0
        self._active = 0  # requests being handled now
        self.accepting = True
        metrics.describe("webhook_requests_total", "counter", "Webhook requests by outcome.")
        metrics.describe("webhook_seconds", "histogram", "Time from request to answer for accepted webhooks.")

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    def _count(self, outcome: str) -> None:
        self._metrics.inc("webhook_requests_total", labels={"outcome": outcome})

    def busy(self) -> bool:
        """True while webhooks are being answered or arrived within the last few milliseconds."""
        return self._active > 0 or time.perf_counter() - self._last_seen < BUSY_WINDOW_S

    def too_large(self) -> tuple[int, str]:
        """The answer to a body over the cap (refused before it is read)."""
        self._count("too_large")
        return 413, "payload too large" + (f" (limit {self._max_body} bytes)" if self._max_body is not None else "")

    def receive(self, body: bytes, *, signature: str | None, event: str, delivery_id: str, target_id: str | None,
                reply: Reply) -> None:
        """Check and record one delivery; `reply(status, text)` is called once, now or when the record is durable.

        The one path of every webhook, whichever HTTP layer framed it (`handle` for aiohttp, `bot.fastlane`).
        Callback style, not a coroutine: the fast lane answers without a task per request.
        """
        started = time.perf_counter()
        if not self.accepting:
            self._count("shutting_down")
            # 503 makes GitHub mark the delivery failed, so it can be redelivered once we are back.
            reply(503, "shutting down")
            return
        # Verify before anything else: unauthenticated input must cost nothing and store nothing.
        if not self._signature.verify(body, signature):
            self._count("bad_signature")
            reply(401, "bad signature")
            return
        if not event or not delivery_id or len(delivery_id) > MAX_DELIVERY_ID or len(event) > 100:
            self._count("bad_request")
            reply(400, "missing or invalid X-GitHub-Event or X-GitHub-Delivery")
            return
        # A manual redelivery reuses the GUID and two Apps can see the same one: dedupe on (app, delivery).
        # https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks
        delivery = self._make(source=target_id or "hook", delivery_id=delivery_id, event=event, body=body,
                              received_at=self._clock())
        # Only authenticated deliveries make the intake "busy" (and so pace the workers): a flood of forged
        # requests must not slow down real work.
        self._active += 1
        self._committer.enqueue(delivery).add_done_callback(
            lambda fut: self._recorded(fut, delivery_id, started, reply))

    def _recorded(self, fut: asyncio.Future[bool], delivery_id: str, started: float, reply: Reply) -> None:
        self._active -= 1
        self._last_seen = time.perf_counter()
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is not None:
            log.error("could not record delivery %s", delivery_id, exc_info=exc)
            self._count("store_error")
            reply(503, "could not record the delivery; please redeliver")
        elif not fut.result():
            self._count("duplicate")
            reply(200, "duplicate delivery")
        else:
            self._count("accepted")
            self._wake()
            self._metrics.observe("webhook_seconds", self._last_seen - started)
            reply(202, "accepted")

    async def handle(self, request: web.Request) -> web.Response:
        """POST /webhook through aiohttp: requests the fast lane hands over (chunked, odd headers) and tests."""
        # A declared size over the cap is refused before a byte of the body is read (aiohttp's own cap, below,
        # covers chunked bodies that declare nothing).
        if self._max_body is not None and (request.content_length or 0) > self._max_body:
            return web.Response(status=413, text=self.too_large()[1])
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text=self.too_large()[1])
        answer: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        def reply(status: int, text: str) -> None:
            if not answer.done():
                answer.set_result((status, text))

        h = request.headers
        self.receive(body, signature=h.get("X-Hub-Signature-256"), event=h.get("X-GitHub-Event", ""),
                     delivery_id=h.get("X-GitHub-Delivery", ""),
                     target_id=h.get("X-GitHub-Hook-Installation-Target-ID"), reply=reply)
        status, text = await answer
        return web.Response(status=status, text=text)

    async def drain(self) -> None:
        self.accepting = False
        await self._committer.drain()


class Wakeup:
    """A level-triggered wake-up for worker loops (cheap to call on every accepted delivery)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
        self._event.clear()
