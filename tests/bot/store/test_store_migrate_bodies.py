"""Migration 0004 on a SQLite store whose webhook bodies were kept in segment files beside the database (0002):
each body comes back into its row intact, and when an unfinished delivery's body cannot be read the migration
stops with a clear message and changes nothing."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection

from bot.store import SchemaError, Store
from bot.store.engine import create_engines, ensure_wal, normalize_url
from bot.store.migrate import alembic_config, head_revision

BODIES = {"g-pending": b'{"pending": "\xe4\xb8\xad"}', "g-processing": b'{"processing": 1}\x00\xff',
          "g-done": b'{"done": true}'}
STATES = {"g-pending": "pending", "g-processing": "processing", "g-done": "done"}


async def _store_at_0002(path: Path) -> None:
    """A database as tunebot's 0002 left it: rows with empty `body` pointing into `<db>-bodies/00000001.seg`."""
    ensure_wal(str(path), 5)
    engines = create_engines(normalize_url(str(path)))

    def up(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")

    try:
        async with engines.writer.begin() as conn:
            await conn.run_sync(up)
    finally:
        await engines.dispose()
    segment = Path(str(path) + "-bodies") / "00000001.seg"
    segment.parent.mkdir()
    segment.write_bytes(b"".join(BODIES.values()))
    db = sqlite3.connect(path)
    with db:
        offset = 0
        for gid, body in BODIES.items():
            db.execute("INSERT INTO deliveries (source, delivery_id, event, action, received_at, body, state, "
                       "attempts, updated_at, body_segment, body_offset, body_length, body_crc32) VALUES ('29310', ?, "
                       "'issue_comment', 'created', '2026-03-01 12:00:00.000000', x'', ?, 0, "
                       "'2026-03-01 12:00:00.000000', 1, ?, ?, ?)", (gid, STATES[gid], offset, len(body),
                                                                      zlib.crc32(body)))
            offset += len(body)
        # A row from before 0002 keeps its body in the row and is left as it is.
        db.execute("INSERT INTO deliveries (source, delivery_id, event, received_at, body, state, attempts, "
                   "updated_at) VALUES ('29310', 'g-inline', 'ping', '2026-03-01 12:00:00.000000', x'7b7d', "
                   "'pending', 0, '2026-03-01 12:00:00.000000')")
    db.close()


def _revision_and_columns(path: Path) -> tuple[str, set[str]]:
    db = sqlite3.connect(path)
    try:
        revision = db.execute("SELECT version_num FROM tunebot_alembic_version").fetchone()[0]
        columns = {r[1] for r in db.execute("PRAGMA table_info(deliveries)")}
    finally:
        db.close()
    return revision, columns


async def test_segment_bodies_move_into_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    await _store_at_0002(path)
    store = await Store.open(path)
    try:
        assert await store.schema_revision() == head_revision()
        for gid, body in BODIES.items():
            d = await store.get_delivery("29310", gid)
            assert d is not None and d.body == body and d.state == STATES[gid]
        inline = await store.get_delivery("29310", "g-inline")
        assert inline is not None and inline.body == b"{}"
        claimed = await store.claim_pending(10, now=inline.received_at)  # the worker gets them back whole
        # g-processing too: a delivery left processing by a version without leases counts as an expired lease.
        assert {d.delivery_id: d.body for d in claimed} == {"g-pending": BODIES["g-pending"], "g-inline": b"{}",
                                                            "g-processing": BODIES["g-processing"]}
    finally:
        await store.close()
    assert not {"body_segment", "body_offset", "body_length", "body_crc32"} & _revision_and_columns(path)[1]


@pytest.mark.parametrize("damage", ["missing", "flipped"])
async def test_an_unreadable_unfinished_body_stops_the_migration_and_changes_nothing(tmp_path: Path,
                                                                                     damage: str) -> None:
    path = tmp_path / "old.db"
    await _store_at_0002(path)
    segment = Path(str(path) + "-bodies") / "00000001.seg"
    if damage == "missing":
        segment.unlink()
    else:
        data = bytearray(segment.read_bytes())
        data[3] ^= 0xFF  # inside g-pending's body: its CRC-32 no longer matches
        segment.write_bytes(bytes(data))
    with pytest.raises(SchemaError, match=r"bodies of \d unfinished webhook deliveries \(g-pending.*restore"):
        await Store.open(path)
    revision, columns = _revision_and_columns(path)
    assert revision == "0002" and "body_segment" in columns  # rolled back: still the old schema, refs intact
    if damage == "flipped":  # a finished delivery's damaged body alone does not stop the migration
        segment.write_bytes(b"".join(BODIES.values())[:-2])  # only g-done (the last body) is short now
        store = await Store.open(path)
        try:
            done = await store.get_delivery("29310", "g-done")
            pending = await store.get_delivery("29310", "g-pending")
            assert done is not None and done.body == b"" and pending is not None
            assert pending.body == BODIES["g-pending"]
        finally:
            await store.close()
