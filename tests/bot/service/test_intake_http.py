"""The webhook front door over real HTTP with a real SQLite store: what it answers, what it stores, what it refuses,
and that refusing costs no memory."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.app import _new_delivery
from bot.intake import Intake
from bot.metrics import Metrics
from bot.store import Store, StoreUnavailable
from tests.fakes.deliveries import delivery_headers, pr_comment_payload
from tests.paths import FIXTURES

SECRET = b"intake-secret"
BODY = json.dumps(pr_comment_payload("Looks good to me."), separators=(",", ":")).encode()


@dataclass
class Front:
    url: str
    store: Store
    metrics: Metrics
    session: aiohttp.ClientSession

    async def post(self, body: bytes = BODY, *, secret: bytes | None = SECRET, delivery_id: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, str]:
        h = delivery_headers("issue_comment", body, secret, delivery_id)
        h.update(headers or {})
        async with self.session.post(self.url, data=body, headers=h) as resp:
            return resp.status, await resp.text()

    def outcome(self, name: str) -> float:
        return self.metrics.value("webhook_requests_total", {"outcome": name})


@pytest.fixture
async def front(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Front]]]:
    cleanup: list[Callable[[], Awaitable[None]]] = []

    async def make(*, busy_timeout_s: float = 30.0, max_body: int = 1 << 20, secret: bytes = SECRET,
                   record_batch: Callable[[list[object]], Awaitable[list[bool]]] | None = None) -> Front:
        store = await Store.open(tmp_path / "intake.db", busy_timeout_s=busy_timeout_s)
        metrics = Metrics()
        intake = Intake(secret=secret, record_batch=record_batch or store.record_deliveries,
                        make_delivery=_new_delivery, metrics=metrics,
                        max_body_bytes=max_body)
        app = web.Application(client_max_size=max_body)
        app.router.add_post("/webhook", intake.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        session = aiohttp.ClientSession()

        async def close() -> None:
            await session.close()
            await runner.cleanup()
            await store.close()

        cleanup.append(close)
        return Front(f"http://127.0.0.1:{port}/webhook", store, metrics, session)

    yield make
    for close in cleanup:
        await close()


async def test_accepts_records_once_and_answers_duplicates(front: Callable[..., Awaitable[Front]]) -> None:
    f = await front()
    assert await f.post(delivery_id="d-1") == (202, "accepted")
    assert await f.post(delivery_id="d-1") == (200, "duplicate delivery")
    stored = await f.store.get_delivery("29310", "d-1")  # source: the App id of X-GitHub-Hook-Installation-Target-ID
    assert stored is not None and stored.body == BODY and stored.event == "issue_comment"
    assert stored.state == "pending" and stored.attempts == 0
    assert f.outcome("accepted") == 1 and f.outcome("duplicate") == 1


async def test_concurrent_deliveries_share_commits_and_each_answer_is_right(
        front: Callable[..., Awaitable[Front]]) -> None:
    f = await front()
    ids = [f"c-{i}" for i in range(60)] + ["c-7", "c-8"]  # two repeats inside the burst
    results = await asyncio.gather(*(f.post(delivery_id=i) for i in ids))
    assert sorted(s for s, _ in results).count(202) == 60
    assert sorted(s for s, _ in results).count(200) == 2
    assert len(await f.store.unfinished_deliveries()) == 60


async def test_forged_missing_and_oversized_requests_store_nothing(front: Callable[..., Awaitable[Front]]) -> None:
    f = await front(max_body=4096)
    small = b'{"action": "created"}'
    assert (await f.post(small, secret=b"not-the-secret"))[0] == 401
    assert (await f.post(small, secret=None))[0] == 401
    assert (await f.post(small, headers={"X-Hub-Signature-256": "sha1=" + "0" * 64}))[0] == 401
    assert (await f.post(small, headers={"X-GitHub-Delivery": ""}))[0] == 400
    assert (await f.post(small, headers={"X-GitHub-Delivery": "x" * 101}))[0] == 400  # the store keeps 100
    assert (await f.post(small, headers={"X-GitHub-Event": ""}))[0] == 400
    # Over the cap: refused from Content-Length alone, before the body is read or the signature checked.
    status, text = await f.post(b"{" + b" " * 5000 + b"}")
    assert status == 413 and "4096" in text
    assert f.outcome("bad_signature") == 3 and f.outcome("bad_request") == 3 and f.outcome("too_large") == 1
    assert await f.store.unfinished_deliveries() == []


async def test_a_chunked_body_over_the_cap_is_refused(front: Callable[..., Awaitable[Front]]) -> None:
    f = await front(max_body=4096)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: aiohttp's own cap has to stop it
        for _ in range(10):
            yield b" " * 1000

    h = delivery_headers("issue_comment", b"", SECRET)
    async with f.session.post(f.url, data=chunks(), headers=h) as resp:
        assert resp.status == 413
    assert f.outcome("too_large") == 1 and await f.store.unfinished_deliveries() == []


async def test_503_while_the_store_is_locked_then_the_redelivery_is_accepted(
        front: Callable[..., Awaitable[Front]], tmp_path: Path) -> None:
    f = await front(busy_timeout_s=0.3)
    blocker = sqlite3.connect(tmp_path / "intake.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        tick = asyncio.get_running_loop().time()
        status, text = await f.post(delivery_id="locked-1")
        # The wait happened off the event loop's back: it answered within about the busy timeout, not 30 s.
        assert asyncio.get_running_loop().time() - tick < 5
        assert status == 503 and "redeliver" in text
        assert f.outcome("store_error") == 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await f.post(delivery_id="locked-1") == (202, "accepted")  # GitHub's redelivery reuses the GUID


async def test_a_write_waiting_for_the_lock_does_not_block_other_requests(
        front: Callable[..., Awaitable[Front]], tmp_path: Path) -> None:
    f = await front(busy_timeout_s=10)
    blocker = sqlite3.connect(tmp_path / "intake.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    pending = asyncio.ensure_future(f.post(delivery_id="waits"))
    await asyncio.sleep(0.2)
    # Meanwhile the loop answers: a forged request is refused at once.
    assert (await asyncio.wait_for(f.post(secret=b"forged"), 2))[0] == 401
    assert not pending.done()
    blocker.execute("COMMIT")
    blocker.close()
    assert await asyncio.wait_for(pending, 5) == (202, "accepted")


async def test_a_store_that_fails_gets_503_and_nothing_is_acknowledged(
        front: Callable[..., Awaitable[Front]]) -> None:
    async def broken(batch: list[object]) -> list[bool]:
        raise StoreUnavailable("database unavailable (disk I/O error)")

    f = await front(record_batch=broken)
    results = [(await f.post(delivery_id=f"b-{i}"))[0] for i in range(3)]
    assert results == [503, 503, 503]
    assert f.outcome("store_error") == 3 and f.outcome("accepted") == 0


async def test_forged_requests_leave_no_memory_behind(front: Callable[..., Awaitable[Front]]) -> None:
    f = await front()
    forged = dict(delivery_headers("issue_comment", BODY, b"wrong-secret"))

    async def flood(n: int) -> None:
        async def one() -> None:
            async with f.session.post(f.url, data=BODY, headers=forged) as resp:
                assert resp.status == 401
                await resp.read()

        for _ in range(n // 50):
            await asyncio.gather(*(one() for _ in range(50)))

    tracemalloc.start()
    try:
        await flood(1000)  # warm-up, traced: connections, parser buffers, caches and metric series settle
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        await flood(2000)  # 2000 x 16 KB bodies: keeping a trace of each would hold 32 MB
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert f.outcome("bad_signature") == 3000
    assert grown < 512 * 1024, f"{grown} bytes still held after 2000 more forged requests"
    assert await f.store.unfinished_deliveries() == []


async def test_githubs_documented_signature_vector_is_accepted(front: Callable[..., Awaitable[Front]]) -> None:
    vector = json.loads((FIXTURES / "github" / "signature_test_vector.json").read_text())
    f = await front(secret=vector["secret"].encode())
    body, good = vector["payload"].encode(), vector["X-Hub-Signature-256"]
    for header, status in ((good[:-1] + "0", 401), ("sha1=" + good[7:], 401), ("SHA256=" + good[7:].upper(), 202)):
        assert (await f.post(body, secret=None, delivery_id="v-1", headers={"X-Hub-Signature-256": header}))[0] \
            == status, header
    assert (await f.store.get_delivery("29310", "v-1")) is not None
