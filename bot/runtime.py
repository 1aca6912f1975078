"""Owns the work after a webhook has been answered: the delivery workers (fed by the intake and the claimer), the
outbox pumps, the sweep, delivery leases, and the graceful drain."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import timedelta

from bot.chat import CHAT_KINDS
from bot.config import Config
from bot.intake import Wakeup
from bot.metrics import Metrics
from bot.outbox import GITHUB_KINDS
from bot.service import Service
from bot.store import NewDelivery
from bot.store.models import Delivery

log = logging.getLogger(__name__)


class Runtime:
    """The background loops: delivery workers, the outbox pump and the periodic sweep.

    Deliveries flow intake or claimer -> queue -> workers -> done marks. The intake's write (`record`) stores new
    deliveries already leased to this replica and queues them as they are, body in hand, while the queue holds fewer
    than `local_queue`; past that it stores them pending (memory stays bounded under a flood) and wakes the claimer.
    The claimer moves pending deliveries (those, retries, other replicas' lapsed leases) to `processing` in one
    statement, as many as fit in a queue of `claim_batch`, so a replica never leases far more than its workers are
    about to start (a slow delivery holds up its own worker, not the queue). `workers` tasks process them
    concurrently, each yielding to the event loop after every delivery so that webhook answers are never stuck
    behind a batch. Done marks are written
    in one statement every `mark_interval_s` (sooner once `mark_batch` are waiting). While deliveries keep coming,
    claims are at least `claim_pause_s` apart, so that they come in batches: each write transaction costs the
    webhooks waiting on SQLite's one writer about a millisecond, whatever it holds. A crash between processing and
    the mark leaves the delivery `processing`; `recover()` hands it out again (at-least-once, as with one mark per
    delivery: the service makes every effect idempotent by its trigger key), and the window is at most
    `mark_interval_s` of deliveries.

    Claims are leases held under `replica_id` for `delivery_lease_s`, renewed every third of it while the deliveries
    are held: replicas on one PostgreSQL database share the work, and when one dies the others take its deliveries
    over once their leases run out. Start-up requeue and `drain()` touch only this replica's own deliveries. A
    delivery whose processing fails is tried again with backoff; after the last attempt the commenter is told.
    """

    claim_batch = 256
    local_queue = 256
    mark_batch = 256
    mark_interval_s = 0.05
    claim_pause_s = 0.05

    def __init__(self, service: Service, config: Config, metrics: Metrics) -> None:
        self.service = service
        self.config = config
        self.metrics = metrics
        self.wakeup = Wakeup()
        self.outbox_wakeup = Wakeup()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.in_flight = 0  # claimed deliveries not yet marked done or failed
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._done: list[int] = []
        self.owner = config.replica_id or socket.gethostname()
        self.lease = timedelta(seconds=config.delivery_lease_s)
        self._held: set[int] = set()  # leased here and not yet marked: their leases are renewed
        self._claiming = True
        metrics.describe("worker_busy", "gauge", "Deliveries claimed and not yet finished.")
        metrics.describe("deliveries_retried_total", "counter", "Delivery attempts that failed and will be retried.")
        metrics.describe("deliveries_failed_total", "counter", "Deliveries given up after their last attempt.")
        metrics.describe("delivery_leases_lost_total", "counter",
                         "Deliveries another replica took over because this one's lease ran out.")

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self._claimer(), name="tunebot-claimer"))
        for i in range(max(1, self.config.workers)):
            self.tasks.append(asyncio.create_task(self._worker(i), name=f"tunebot-worker-{i}"))
        self.tasks.append(asyncio.create_task(self._outbox_loop(GITHUB_KINDS, self.outbox_wakeup, batch=4),
                                              name="outbox"))
        self.service.core.wake_outbox = self.outbox_wakeup.set  # GitHub writes are performed by that loop alone
        # Chat has its own loop: a slow Slack or a DingTalk minute-limit never delays a GitHub write.
        self.tasks.append(asyncio.create_task(self._outbox_loop(CHAT_KINDS, Wakeup()), name="chat-outbox"))
        self.tasks.append(asyncio.create_task(self._sweep_loop(), name="tunebot-sweep"))
        self.tasks.append(asyncio.create_task(self._lease_loop(), name="tunebot-leases"))
        self.tasks.append(asyncio.create_task(self._mark_loop(), name="tunebot-marks"))

    async def recover(self) -> None:
        """Deliveries that were accepted but not finished when the last process died are picked up again."""
        store = self.service.store
        n = await store.requeue_processing(now=self.service.now(), owner=self.owner)  # never a live replica's
        pending = await store.unfinished_deliveries()
        if n or pending:
            log.info("recovering %d unfinished deliveries (%d were mid-processing)", len(pending), n)
        self.wakeup.set()

    async def record(self, batch: list[NewDelivery]) -> list[bool]:
        """The intake's durable write: the batch in one transaction; for each item, whether it is new."""
        local = bool(self.tasks) and self._claiming and self._queue.qsize() + len(batch) <= self.local_queue
        stored = await self.service.store.record_deliveries(batch, lease_to=self.owner if local else None,
                                                            lease=self.lease, now=self.service.now())
        fresh = [d for d in stored if d is not None]
        if local:  # the intake drains before the runtime does: nothing is queued here after `drain()` began
            self._queue_all(fresh)
        elif fresh:
            self.wakeup.set()
        return [d is not None for d in stored]

    def _queue_all(self, deliveries: list[Delivery]) -> None:
        self._busy(len(deliveries))
        self._held.update(d.id for d in deliveries)
        for delivery in deliveries:
            self._queue.put_nowait(delivery)

    def _busy(self, delta: int) -> None:
        self.in_flight += delta
        self.metrics.set("worker_busy", self.in_flight)

    async def _claimer(self) -> None:
        store = self.service.store
        while not self.stopping and self._claiming:
            room = self.claim_batch - self._queue.qsize()
            if room <= 0:  # the workers have enough in hand; what is pending waits for room
                await asyncio.sleep(self.claim_pause_s)
                continue
            try:
                batch = await store.claim_pending(room, now=self.service.now(), owner=self.owner, lease=self.lease)
            except Exception:
                log.exception("claiming deliveries failed")
                await asyncio.sleep(1.0)
                continue
            if not batch:
                await self.wakeup.wait(1.0)
                continue
            self._queue_all(batch)
            await asyncio.sleep(self.claim_pause_s)

    async def _worker(self, index: int) -> None:
        while True:
            delivery = await self._queue.get()
            await self._process(delivery)
            await asyncio.sleep(0)  # at least one turn of the loop per delivery: webhooks are answered in between
            if len(self._done) >= self.mark_batch:
                await self.flush_done()

    async def _mark_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.mark_interval_s)
            await self.flush_done()

    async def _process(self, delivery: Delivery) -> None:
        limit = self.config.delivery_max_attempts
        if delivery.attempts > limit:  # every earlier holder died while working on it: never try it forever
            await self._failed(delivery, f"gave up after {limit} attempts (the replicas processing it stopped)")
            return
        try:
            await self.service.process_delivery(delivery)
        except Exception as exc:  # one bad delivery must not stop the worker; the store keeps the reason
            error = f"{type(exc).__name__}: {exc}"
            if delivery.attempts >= limit:
                log.exception("delivery %s failed (attempt %d of %d); giving up", delivery.delivery_id,
                              delivery.attempts, limit)
                await self._failed(delivery, error)
                return
            wait = min(3600.0, self.config.delivery_retry_base_s * 2 ** (delivery.attempts - 1))
            log.warning("delivery %s failed (attempt %d of %d), retrying in %.0f s: %s", delivery.delivery_id,
                        delivery.attempts, limit, wait, error)
            self.metrics.inc("deliveries_retried_total")
            try:
                now = self.service.now()
                await self.service.store.retry_delivery(delivery.id, error, retry_at=now + timedelta(seconds=wait),
                                                        now=now)
            except Exception:  # left `processing`: its lease runs out and it is handed out again
                log.exception("could not schedule delivery %s for a retry", delivery.delivery_id)
            self._release_local(delivery.id)
            self.wakeup.set()
            return
        self._done.append(delivery.id)

    async def _failed(self, delivery: Delivery, error: str) -> None:
        """The last attempt failed: the delivery is marked failed and the commenter hears what failed."""
        self.metrics.inc("deliveries_failed_total")
        try:
            await self.service.store.mark_delivery(delivery.id, "failed", error, now=self.service.now())
            await self.service.delivery_failed(delivery, error)
        except Exception:  # left `processing`: its lease runs out and the next attempt gives up again
            log.exception("could not record that delivery %s failed", delivery.delivery_id)
        self._release_local(delivery.id)

    def _release_local(self, id: int) -> None:
        self._held.discard(id)
        self._busy(-1)

    async def _lease_loop(self) -> None:
        """Renew the leases of the deliveries held here, every third of the lease."""
        while not self.stopping:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            held = set(self._held)
            if not held:
                continue
            try:
                kept = await self.service.store.renew_leases(held, owner=self.owner, now=self.service.now(),
                                                             lease=self.lease)
            except Exception:
                log.exception("renewing %d delivery leases failed", len(held))
                continue
            lost = held - kept - (held - self._held)  # ids marked meanwhile are not lost
            if lost:
                self._held.difference_update(lost)  # counted once; the other replica finishes them
                self.metrics.inc("delivery_leases_lost_total", len(lost))
                log.warning("%d deliveries were taken over by another replica (this one's lease ran out)",
                            len(lost))

    async def flush_done(self) -> None:
        """Write the pending done marks in one statement (on failure they stay queued for the next flush)."""
        if not self._done:
            return
        ids, self._done = self._done, []
        try:
            await self.service.store.mark_deliveries(ids, "done", now=self.service.now())
        except Exception:
            log.exception("marking %d deliveries done failed; retrying with the next batch", len(ids))
            self._done[:0] = ids
            return
        self._held.difference_update(ids)
        self._busy(-len(ids))

    async def _outbox_loop(self, kinds: tuple[str, ...], wakeup: Wakeup, batch: int | None = None) -> None:
        while not self.stopping:
            try:
                # In claims of `batch`: at GitHub's pace (80 writes a minute) a claim of 4 is written within 3 s,
                # far inside its lease, and the next claim takes whatever now ranks highest.
                await self.service.outbox.pump(limit=1000 if batch else 50, kinds=kinds, batch=batch)
            except Exception:
                log.exception("outbox pump failed")
            await wakeup.wait(2.0)

    async def _sweep_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                await self.service.sweep()
            except Exception:
                log.exception("sweep failed")
            try:
                await self.service.prune()
            except Exception:
                log.exception("pruning old deliveries failed")

    async def drain(self, timeout: float = 30.0) -> None:
        """Stop taking new work, give back what was claimed but not started (another replica, or the next start,
        takes it at once), let the deliveries being processed finish, then stop the loops. Other replicas'
        deliveries are none of this one's business."""
        deadline = time.monotonic() + timeout
        self._claiming = False
        unstarted: list[int] = []
        while not self._queue.empty():
            unstarted.append(self._queue.get_nowait().id)
        if unstarted:
            try:
                await self.service.store.release_deliveries(unstarted, owner=self.owner, now=self.service.now())
            except Exception:  # still leased here: they run out and are taken over
                log.exception("giving back %d unstarted deliveries failed", len(unstarted))
            self._held.difference_update(unstarted)
            self._busy(-len(unstarted))
        while not self.stopping and self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if len(self._done) >= self.in_flight:
                await self.flush_done()
        self.stopping = True
        self.wakeup.set()
        self.outbox_wakeup.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.service.core.wake_outbox = None  # what is decided while settling is written at once
        await self.flush_done()  # what was processed is marked; what was only claimed is picked up at the next start
        await self.service.settle()
