"""Working off recorded deliveries: rows read back exactly as recorded, marks are batched and all-or-nothing, the WAL
stays small under steady writes, and the runtime processes every delivery exactly once, marks failures one by one,
and prunes finished deliveries after the retention."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.app import RUNTIME_KEY
from bot.store import NewDelivery, Store, StoreError
from tests.bot.service.conftest import Bot
from tests.postgres import postgres_url

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def delivery(gid: str, *, seconds: float = 0, body: bytes | None = None) -> NewDelivery:
    return NewDelivery(source="github:app/1", delivery_id=gid, event="issue_comment", action="created",
                       body=body if body is not None else b'{"gid": "' + gid.encode() + b'"}', received_at=at(seconds))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "worker.db")
    try:
        yield s
    finally:
        await s.close()


async def _pg_store() -> tuple[Store, Any]:
    """A Store in a fresh schema on the PostgreSQL server (the policy of tests/postgres.py: no server fails the
    test, unless TUNEBOT_SKIP_POSTGRES=1), and a function that drops it."""
    url = await postgres_url()
    conn = await asyncpg.connect(url, timeout=5)
    schema = f"tb_intake_{uuid.uuid4().hex[:10]}"
    s = await Store.open(url, schema=schema)

    async def drop() -> None:
        await s.close()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()

    return s, drop


@pytest.fixture(params=["sqlite", "transaction", pytest.param("postgres", marks=pytest.mark.postgres)])
async def marking(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    """A store and how mark_deliveries reaches it: SQLite (alone, or inside a transaction) or PostgreSQL."""
    if request.param == "postgres":
        s, close = await _pg_store()
    else:
        s = await Store.open(tmp_path / "marking.db")
        close = s.close
    try:
        yield s, request.param
    finally:
        await close()


async def test_recorded_rows_read_back_exactly_however_they_were_written(store: Store) -> None:
    raw = b'{"comment": {"body": "\xe4\xb8\xad"}}\x00\xff'
    # received_at in another zone: stored as UTC, read back equal (the same instant, aware, in UTC).
    shanghai = timezone(timedelta(hours=8))
    eastern = NewDelivery("github:app/1", "g-east", "issue_comment", raw, at(1).astimezone(shanghai))
    stored = await store.record_deliveries([delivery("g-fast", seconds=5), eastern])
    assert [d is not None for d in stored] == [True, True]
    async with store.transaction() as tx:  # recorded inside a transaction: the same rows, the same dedupe
        stored = await tx.record_deliveries([delivery("g-sqla", seconds=7), delivery("g-fast")])
        assert [d is not None for d in stored] == [True, False]
    fast = await store.get_delivery("github:app/1", "g-fast")
    east = await store.get_delivery("github:app/1", "g-east")
    assert fast is not None and fast.received_at == at(5) and fast.updated_at == at(5) and fast.action == "created"
    assert east is not None and east.body == raw and east.received_at == at(1) and east.received_at.tzinfo == UTC
    claimed = await store.claim_pending(10, now=at(20))
    assert [d.delivery_id for d in claimed] == ["g-fast", "g-east", "g-sqla"]
    for d in claimed:
        again = await store.get_delivery(d.source, d.delivery_id)
        assert again == d  # every field, timestamps included
    assert claimed[2].received_at == at(7) and claimed[2].updated_at == at(20) and claimed[2].attempts == 1


async def test_mark_deliveries_is_one_all_or_nothing_statement(marking: tuple[Store, str]) -> None:
    store, path = marking
    await store.record_deliveries([delivery(f"g{i}") for i in range(5)])
    ids = [d.id for d in await store.claim_pending(5, now=at(1))]

    async def mark(*args: Any, **kw: Any) -> int:
        if path != "transaction":
            return await store.mark_deliveries(*args, **kw)
        async with store.transaction() as tx:
            return await tx.mark_deliveries(*args, **kw)

    with pytest.raises(StoreError, match="unknown delivery id"):
        await mark([ids[0], ids[1], 999_999], "done", now=at(2))
    assert {d.state for d in await store.unfinished_deliveries()} == {"processing"}  # nothing changed
    assert await mark([*ids[:3], ids[0]], "done", now=at(3)) == 3  # repeats count once
    assert await mark([ids[3]], "failed", "GitHub said 502" + "x" * 10_000, now=at(4)) == 1
    assert await mark([], "done", now=at(5)) == 0
    with pytest.raises(StoreError, match="'finished' is not one of"):
        await mark(ids[4:], "finished", now=at(5))  # type: ignore[arg-type]
    rows = {d.id: d for d in [await store.get_delivery("github:app/1", f"g{i}") for i in range(5)] if d}
    assert [rows[i].state for i in ids] == ["done", "done", "done", "failed", "processing"]
    assert rows[ids[0]].updated_at == at(3) and rows[ids[0]].error is None
    assert rows[ids[3]].error is not None and len(rows[ids[3]].error or "") <= 4000
    assert [d.delivery_id for d in await store.unfinished_deliveries()] == ["g4"]


async def test_marks_over_the_statement_chunk_size_still_land_together(store: Store) -> None:
    await store.record_deliveries([delivery(f"g{i:04}") for i in range(1200)])
    claimed = await store.claim_pending(1200, now=at(1))
    assert len(claimed) == 1200
    assert await store.mark_deliveries([d.id for d in claimed], "done", now=at(2)) == 1200
    assert await store.unfinished_deliveries() == []


async def test_the_wal_stays_small_under_steady_writes(store: Store, tmp_path: Path) -> None:
    body = b'{"x": "' + b"y" * 14_000 + b'"}'  # about a real issue_comment delivery
    wal = tmp_path / "worker.db-wal"
    largest = 0
    for batch in range(300):  # 300 x 40 x 14 KB = 168 MB through the WAL, with a moment between batches
        await store.record_deliveries([delivery(f"b{batch}-{i}", body=body) for i in range(40)])
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        await asyncio.sleep(0.001)  # (what answering the requests of the next batch takes, at least)
    # SQLite's automatic checkpoints copy the WAL back and start it over while writes go on; it never holds all 168 MB.
    assert largest < 48 * 1024 * 1024, f"WAL grew to {largest} bytes"
    assert len(await store.unfinished_deliveries(limit=13_000)) == 12_000


async def test_a_long_reader_does_not_hold_up_webhook_writes(store: Store, tmp_path: Path) -> None:
    reader = sqlite3.connect(tmp_path / "worker.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM deliveries").fetchone()  # holds its snapshot: the WAL cannot restart
    body = b'{"x": "' + b"y" * 14_000 + b'"}'
    slowest = 0.0
    try:
        for batch in range(60):
            tick = time.perf_counter()
            await store.record_deliveries([delivery(f"r{batch}-{i}", body=body) for i in range(20)])
            slowest = max(slowest, time.perf_counter() - tick)
            await asyncio.sleep(0.002)
    finally:
        reader.execute("COMMIT")
        reader.close()
    # The reader pins the WAL (no checkpoint can finish), but writers never wait for it.
    assert slowest < 1.0, f"a write waited {slowest:.2f} s"
    assert len(await store.unfinished_deliveries(limit=2000)) == 1200


async def test_every_comment_is_processed_once_and_marked_in_batches(make_bot: Any) -> None:
    bot: Bot = await make_bot()
    store = bot.service.store
    calls: dict[str, list[int]] = {"batch": [], "single": []}
    mark_many, mark_one = store.mark_deliveries, store.mark_delivery

    async def spy_many(ids: Any, *args: Any, **kw: Any) -> int:
        calls["batch"].append(len(ids))
        return await mark_many(ids, *args, **kw)

    async def spy_one(id: int, *args: Any, **kw: Any) -> Any:
        calls["single"].append(id)
        return await mark_one(id, *args, **kw)

    store.mark_deliveries = spy_many  # type: ignore[method-assign]
    store.mark_delivery = spy_one  # type: ignore[method-assign]
    results = await asyncio.gather(*(bot.comment(f"Nice work #{i}, thanks!") for i in range(80)))
    assert all(r.status == 202 for r in results)
    await bot.settle()
    rows = [await store.get_delivery("29310", r.delivery_id) for r in results]
    assert all(d is not None and d.state == "done" and d.attempts == 1 and d.error is None for d in rows)
    assert bot.service.metrics.value("deliveries_processed_total",
                                     {"event": "issue_comment", "outcome": "done"}) == 80
    assert sum(calls["batch"]) == 80 and len(calls["batch"]) < 80 and calls["single"] == []
    assert bot.runner.app[RUNTIME_KEY].in_flight == 0
    assert bot.bot_comments() == []  # plain comments: no answer, no GitHub write


async def test_accepted_deliveries_are_worked_off_from_memory_and_a_full_queue_leaves_them_to_the_claimer(
        make_bot: Any) -> None:
    """The receiving replica queues a delivery it has just recorded (leased to itself) without claiming it again;
    once its queue holds `local_queue`, deliveries are recorded pending and the claimer hands them out."""
    bot: Bot = await make_bot(replica_id="replica-a")
    store, runtime = bot.service.store, bot.runner.app[RUNTIME_KEY]
    claimed: list[str] = []
    claim = store.claim_pending

    async def spy(*args: Any, **kw: Any) -> Any:
        got = await claim(*args, **kw)
        claimed.extend(d.delivery_id for d in got)
        return got

    store.claim_pending = spy  # type: ignore[method-assign]
    local = await asyncio.gather(*(bot.comment(f"plain {i}") for i in range(12)))
    await bot.settle()
    runtime.local_queue = 0
    queued = await asyncio.gather(*(bot.comment(f"queued {i}") for i in range(5)))
    await bot.settle()
    for r in (*local, *queued):
        d = await store.get_delivery("29310", r.delivery_id)
        assert d is not None and (d.state, d.attempts, d.claimed_by) == ("done", 1, "replica-a")
    assert sorted(claimed) == sorted(r.delivery_id for r in queued)
    assert bot.service.metrics.value("deliveries_processed_total",
                                     {"event": "issue_comment", "outcome": "done"}) == 17


async def test_a_failing_delivery_is_retried_then_marked_failed_and_the_commenter_told(make_bot: Any) -> None:
    """Issue 12: a delivery whose processing fails (GitHub 5xx after the client's own retries) is tried again with
    backoff; after the last attempt it is marked failed and the commenter hears what failed and what to do."""
    bot: Bot = await make_bot(delivery_max_attempts=3, delivery_retry_base_s=0.05)
    bot.github.fail_next("GET", "/repos/*/pulls/*", times=100, status=500)  # /status on a PR needs the PR
    plain = await asyncio.gather(*(bot.comment(f"plain {i}") for i in range(5)))
    command = await bot.comment("/status")
    await bot.settle()
    store = bot.service.store
    failed = await store.get_delivery("29310", command.delivery_id)
    assert failed is not None and failed.state == "failed" and failed.error and "500" in failed.error
    assert failed.attempts == 3
    assert len(bot.github.requests_to("GET", "/repos/*/pulls/*")) == 3 * 3  # 3 attempts, each retried 3 times
    for r in plain:
        d = await store.get_delivery("29310", r.delivery_id)
        assert d is not None and d.state == "done" and d.attempts == 1
    (reply,) = bot.bot_comments()
    assert reply.startswith("⚠️ @Codertocat your command could not be carried out after 3 attempts: ServerError")
    assert "500" in reply and "Comment it again" in reply and command.delivery_id in reply


async def test_a_delivery_that_fails_once_succeeds_on_its_retry(make_bot: Any) -> None:
    bot: Bot = await make_bot(delivery_max_attempts=3, delivery_retry_base_s=0.05)
    bot.github.fail_next("GET", "/repos/*/pulls/*", times=4, status=502)  # the first attempt's 3 tries, and one
    command = await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    d = await bot.service.store.get_delivery("29310", command.delivery_id)
    assert d is not None and (d.state, d.attempts) == ("done", 2)
    assert len(bot.dispatches()) == 1
    assert not any("could not be carried out" in c for c in bot.bot_comments())


async def test_shutdown_marks_what_was_processed(make_bot: Any, tmp_path: Path) -> None:
    bot: Bot = await make_bot(db=tmp_path / "shutdown.db")
    results = await asyncio.gather(*(bot.comment(f"plain {i}") for i in range(30)))
    for _ in range(200):  # shut down once the work has begun
        first = await bot.service.store.get_delivery("29310", results[0].delivery_id)
        if first is not None and first.state == "done":
            break
        await asyncio.sleep(0.01)
    await bot.runner.cleanup()  # SIGTERM's path: stop intake, drain the workers, flush the marks
    after = await Store.open(tmp_path / "shutdown.db")
    try:
        # What was processed is marked done; what was claimed but not started is given back (pending, the attempt
        # not counted) for another replica or the next start: nothing is left leased to a replica that is gone.
        got = [await after.get_delivery("29310", r.delivery_id) for r in results]
        states = [(d.state, d.attempts, d.claimed_by if d.state == "pending" else "-") for d in got if d is not None]
        assert len(states) == 30 and set(states) <= {("done", 1, "-"), ("pending", 0, None)}, states
        assert ("done", 1, "-") in states
    finally:
        await after.close()


async def test_finished_deliveries_are_pruned_after_the_retention(make_bot: Any, tmp_path: Path) -> None:
    bot: Bot = await make_bot(db=tmp_path / "prune.db", delivery_retention_days=7)
    store = bot.service.store
    old = [await bot.comment(f"old {i}") for i in range(3)]
    await bot.settle()
    assert await bot.service.prune() == 0  # nothing is old yet
    real_clock = bot.service.clock
    bot.service.clock = lambda: real_clock() + 8 * 86400
    young = NewDelivery(source="29310", delivery_id="young", event="issue_comment", action="created",
                        body=b'{"young": 1}', received_at=bot.service.now())  # received "8 days later"
    await store.record_deliveries([young])
    bot.runner.app[RUNTIME_KEY].wakeup.set()
    await bot.settle()
    assert await bot.service.prune() == 3
    for r in old:
        assert await store.get_delivery("29310", r.delivery_id) is None
    kept = await store.get_delivery("29310", "young")
    assert kept is not None and kept.state == "done" and kept.body == b'{"young": 1}'

    off: Bot = await make_bot(db=tmp_path / "keep.db", delivery_retention_days=0)
    await off.comment("kept forever")
    await off.settle()
    off.service.clock = lambda: real_clock() + 800 * 86400
    assert await off.service.prune() == 0


def test_no_database_files_are_left_open(tmp_path: Path) -> None:
    async def cycle() -> None:
        s = await Store.open(tmp_path / "close.db")
        await s.record_deliveries([delivery("g1")])
        assert len(await s.claim_pending(5, now=at(1))) == 1
        await s.close()

    asyncio.run(cycle())
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not any(str(tmp_path / "close.db") in p for p in held)
