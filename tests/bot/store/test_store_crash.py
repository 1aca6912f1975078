"""Real processes: a writer killed mid-transaction leaves nothing behind, and concurrent writer processes neither
corrupt the database nor double-count a delivery or an outbox item."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from bot.store import Store

from .conftest import Backend

WORKER = Path(__file__).resolve().parent / "store_worker.py"


async def _spawn(backend: Backend, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), args[0], backend.url, backend.schema or "-", *args[1:],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _integrity_ok(store: Store) -> None:
    if store.dialect == "sqlite":
        async with store._engines.reader.connect() as conn:
            assert (await conn.execute(text("PRAGMA integrity_check"))).scalar() == "ok"


async def test_a_writer_killed_mid_transaction_leaves_nothing(backend: Backend, store: Store) -> None:
    proc = await _spawn(backend, "hang", "tb-00000000c0a5")
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"READY", (line, await proc.stderr.read() if proc.stderr else b"")
    proc.send_signal(signal.SIGKILL)  # kill -9 while it holds an open write transaction
    await proc.wait()
    # The lock died with the process: the store is writable at once, and nothing of the decision exists.
    assert await store.get_run("tb-00000000c0a5") is None
    assert await store.get_by_key("tb-00000000c0a5:dispatch") is None
    assert await store.enqueue("after-crash", "slack", {}, datetime(2026, 3, 1, tzinfo=UTC))
    await _integrity_ok(store)


async def test_a_committed_decision_survives_the_process_dying(backend: Backend, store: Store) -> None:
    proc = await _spawn(backend, "commit", "tb-00000000c0a6")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out.strip() == b"COMMITTED", err
    run = await store.get_run("tb-00000000c0a6")
    assert run is not None and run.state == "queued"
    item = await store.get_by_key("tb-00000000c0a6:dispatch")
    assert item is not None and item.state == "pending"
    await _integrity_ok(store)


async def test_concurrent_writer_processes_do_not_corrupt_or_double(tmp_path: Path) -> None:
    # SQLite only: one file, several processes, one writer at a time through WAL + BEGIN IMMEDIATE + busy timeout.
    # (PostgreSQL's row locking is exercised in-process by the concurrent claim/lease/apply tests.)
    backend = Backend("sqlite", str(tmp_path / "shared.db"), None)
    store = await backend.open()
    try:
        await _record_from_three_processes(backend, store)
    finally:
        await store.close()


async def _record_from_three_processes(backend: Backend, store: Store) -> None:
    # Three processes over overlapping id ranges: 0-119, 60-179, 120-239 (every id past 59 is contended).
    procs = [await _spawn(backend, "record", str(start), "120") for start in (0, 60, 120)]
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 240)
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    new_per_process = [json.loads(out) for out, _ in outs]
    claimed = [gid for ids in new_per_process for gid in ids]
    assert len(claimed) == len(set(claimed)) == 240  # each id was new for exactly one process
    assert len(await store.unfinished_deliveries()) == 240
    items = await store.due(datetime(2026, 3, 1, 12, tzinfo=UTC), 1000)
    assert len(items) == 240 and len({i.key for i in items}) == 240
    await _integrity_ok(store)
