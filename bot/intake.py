"""Owns the webhook front door: verify the signature over the raw body, cap the size, record the delivery durably
(deduplicated on app + delivery id) and answer 202 in milliseconds; the runtime's write hands it to the workers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from bot.batching import GroupCommitter
from bot.github.sansio import verify_signature
from bot.metrics import Metrics

log = logging.getLogger(__name__)

RecordBatch = Callable[[list[Any]], Awaitable[list[bool]]]
MakeDelivery = Callable[..., Any]

MAX_DELIVERY_ID = 100  # the store's column width; GitHub's GUIDs are 36 characters


class Intake:
    """POST /webhook: the checks, the durable record (through a group committer), the answer."""

    def __init__(
        self,
        *,
        secret: bytes,
        record_batch: RecordBatch,
        make_delivery: MakeDelivery,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        max_body_bytes: int | None = None,
    ) -> None:
        self._secret = secret
        # Concurrent deliveries share one transaction: one commit per round trip to the database, not per request.
        self._committer: GroupCommitter[Any, bool] = GroupCommitter(record_batch)
        self._make = make_delivery
        self._metrics = metrics
        self._clock = clock
        self._max_body = max_body_bytes
        self.accepting = True
        metrics.describe("webhook_requests_total", "counter", "Webhook requests by outcome.")
        metrics.describe("webhook_seconds", "histogram", "Time from request to answer for accepted webhooks.")

    def _answer(self, outcome: str, status: int, text: str) -> web.Response:
        self._metrics.inc("webhook_requests_total", labels={"outcome": outcome})
        return web.Response(status=status, text=text)

    def _too_large(self) -> web.Response:
        resp = self._answer("too_large", 413, "payload too large"
                            + (f" (limit {self._max_body} bytes)" if self._max_body is not None else ""))
        resp.force_close()  # the body is not read: the connection cannot carry another request
        return resp

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        # A declared size over the cap is refused before a byte of the body is read (aiohttp's own cap, below,
        # covers chunked bodies that declare nothing).
        if self._max_body is not None and (request.content_length or 0) > self._max_body:
            return self._too_large()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        return await self._receive(body, request.headers, started)

    async def _receive(self, body: bytes, headers: Mapping[str, str], started: float) -> web.Response:
        """Check and durably record one delivery; the answer once it is committed (or refused)."""
        if not self.accepting:
            # 503 makes GitHub mark the delivery failed, so it can be redelivered once we are back.
            return self._answer("shutting_down", 503, "shutting down")
        # Verify before anything else: unauthenticated input must cost nothing and store nothing.
        if not verify_signature(self._secret, body, headers.get("X-Hub-Signature-256")):
            return self._answer("bad_signature", 401, "bad signature")
        event, delivery_id = headers.get("X-GitHub-Event", ""), headers.get("X-GitHub-Delivery", "")
        if not event or not delivery_id or len(delivery_id) > MAX_DELIVERY_ID or len(event) > 100:
            return self._answer("bad_request", 400, "missing or invalid X-GitHub-Event or X-GitHub-Delivery")
        # A manual redelivery reuses the GUID and two Apps can see the same one: dedupe on (app, delivery).
        # https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks
        delivery = self._make(source=headers.get("X-GitHub-Hook-Installation-Target-ID") or "hook",
                              delivery_id=delivery_id, event=event, body=body, received_at=self._clock())
        try:
            new = await self._committer.enqueue(delivery)
        except Exception:
            log.exception("could not record delivery %s", delivery_id)
            return self._answer("store_error", 503, "could not record the delivery; please redeliver")
        if not new:
            return self._answer("duplicate", 200, "duplicate delivery")
        self._metrics.observe("webhook_seconds", time.perf_counter() - started)
        return self._answer("accepted", 202, "accepted")

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
