"""Owns the webhook front door: verify the signature over the raw body, cap the size, record the delivery durably
(deduplicated on app + delivery id), answer 202 in milliseconds, and wake the workers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.batching import GroupCommitter
from bot.github.sansio import verify_signature
from bot.metrics import Metrics

log = logging.getLogger(__name__)

RecordBatch = Callable[[list[Any]], Awaitable[list[bool]]]
MakeDelivery = Callable[..., Any]


class Intake:
    def __init__(
        self,
        *,
        secret: bytes,
        record_batch: RecordBatch,
        make_delivery: MakeDelivery,
        metrics: Metrics,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._committer: GroupCommitter[Any, bool] = GroupCommitter(record_batch)
        self._make = make_delivery
        self._metrics = metrics
        self._wake = wake
        self._clock = clock
        self.accepting = True
        metrics.describe("webhook_requests_total", "counter", "Webhook requests by outcome.")
        metrics.describe("webhook_seconds", "histogram", "Time from request to answer for accepted webhooks.")

    def _count(self, outcome: str) -> None:
        self._metrics.inc("webhook_requests_total", labels={"outcome": outcome})

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        if not self.accepting:
            self._count("shutting_down")
            # 503 makes GitHub mark the delivery failed, so it can be redelivered once we are back.
            return web.Response(status=503, text="shutting down")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._count("too_large")
            return web.Response(status=413, text="payload too large")
        # Verify before anything else: unauthenticated input must cost nothing and store nothing.
        if not verify_signature(self._secret, body, request.headers.get("X-Hub-Signature-256")):
            self._count("bad_signature")
            return web.Response(status=401, text="bad signature")
        event = request.headers.get("X-GitHub-Event", "")
        delivery_id = request.headers.get("X-GitHub-Delivery", "")
        if not event or not delivery_id or len(delivery_id) > 128:
            self._count("bad_request")
            return web.Response(status=400, text="missing X-GitHub-Event or X-GitHub-Delivery")
        # A manual redelivery reuses the GUID and two Apps can see the same one: dedupe on (app, delivery).
        # https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks
        source = request.headers.get("X-GitHub-Hook-Installation-Target-ID") or "hook"
        delivery = self._make(source=source, delivery_id=delivery_id, event=event, body=body, received_at=self._clock())
        try:
            new = await self._committer.submit(delivery)
        except Exception:
            log.exception("could not record delivery %s", delivery_id)
            self._count("store_error")
            return web.Response(status=503, text="could not record the delivery; please redeliver")
        if not new:
            self._count("duplicate")
            return web.Response(status=200, text="duplicate delivery")
        self._count("accepted")
        self._wake()
        self._metrics.observe("webhook_seconds", time.perf_counter() - started)
        return web.Response(status=202, text="accepted")

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
