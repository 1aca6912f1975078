"""Delivery bodies in segment files (SQLite fast path): BodyLog writing, rotation, damage detection, collection and
syncing, and the Store's recording, claiming, pruning and reopening of deliveries whose bodies live there."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from bot.store import NewDelivery, Store, StoreError
from bot.store.bodies import FOREIGN_SEGMENT_AGE_S, BodyLog, BodyRef, BodyUnreadable, _pwrite_all

from .helpers import at, delivery

SOURCE = "github:app/1"
PWRITEV = "bot.store.bodies.os.pwritev"  # the os module's own: patched for the length of one test


def _seg(directory: Path, n: int) -> Path:
    return directory / f"{n:08d}.seg"


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.name.removesuffix(".seg")) for p in directory.glob("*.seg"))


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


# --- BodyLog ------------------------------------------------------------------------------------------------------

def test_bodies_read_back_exactly_from_contiguous_refs(tmp_path: Path) -> None:
    directory = tmp_path / "bodies"
    log = BodyLog(directory)
    big = bytes(range(256)) * 400  # 100 KB, every byte value
    written = [b'{"a": 1}', b"", big, b"\x00\xff tail"]
    try:
        refs = log.append(written)
        more = log.append([b"second batch"])
        assert _seg(directory, 1).is_file()
        assert {r.segment for r in refs + more} == {1}
        offset = 0
        for ref, body in zip(refs + more, [*written, b"second batch"], strict=True):
            assert (ref.offset, ref.length) == (offset, len(body))
            offset += len(body)
        assert _seg(directory, 1).stat().st_size == offset
        for ref, body in zip(refs, written, strict=True):
            assert log.read(ref) == body
        assert log.read(more[0]) == b"second batch"
        # Another instance (a restarted process) reads the same bytes.
        assert BodyLog(directory).read(refs[2]) == big
    finally:
        log.close()


def test_rotation_and_restart_never_append_to_an_old_segment(tmp_path: Path) -> None:
    directory = tmp_path / "bodies"
    log = BodyLog(directory, segment_bytes=10)
    written: list[tuple[BodyRef, bytes]] = []
    try:
        for i in range(5):
            body = f"body-{i}-".encode() * 2  # 16 bytes: every batch fills its segment
            written += zip(log.append([body]), [body], strict=True)
        small = b"abc"
        written += zip(log.append([small]), [small], strict=True)  # a new segment: the last one holds 16 bytes
        written += zip(log.append([small]), [small], strict=True)  # 3 < 10: still the same segment
        numbers = [ref.segment for ref, _ in written]
        assert numbers == [1, 2, 3, 4, 5, 6, 6]
        assert _segments(directory) == [1, 2, 3, 4, 5, 6]
        for ref, body in written:
            assert log.read(ref) == body
    finally:
        log.close()
    sizes = {n: _seg(directory, n).stat().st_size for n in _segments(directory)}
    assert sizes[6] == 6

    restarted = BodyLog(directory, segment_bytes=10)
    try:
        (ref,) = restarted.append([b"after restart"])
        assert ref.segment == 7 and ref.offset == 0
        assert {n: _seg(directory, n).stat().st_size for n in range(1, 7)} == sizes
        assert restarted.read(ref) == b"after restart"
        for old, body in written:
            assert restarted.read(old) == body
    finally:
        restarted.close()


def test_damaged_short_and_missing_bodies_are_reported(tmp_path: Path) -> None:
    directory = tmp_path / "bodies"
    log = BodyLog(directory, segment_bytes=1)  # one segment per batch
    try:
        (damaged,) = log.append([b"x" * 100])
        (short,) = log.append([b"y" * 100])
        (missing,) = log.append([b"z" * 100])
        (intact,) = log.append([b"fine"])
        log.sync()
        assert [r.segment for r in (damaged, short, missing, intact)] == [1, 2, 3, 4]

        _flip(_seg(directory, 1), damaged.offset + 50)
        with pytest.raises(BodyUnreadable, match="CRC"):
            log.read(damaged)

        os.truncate(_seg(directory, 2), 60)
        with pytest.raises(BodyUnreadable, match="short") as exc:
            log.read(short)
        assert "60 of 100" in str(exc.value)

        _seg(directory, 3).unlink()
        with pytest.raises(BodyUnreadable, match="missing"):
            log.read(missing)

        assert log.read(intact) == b"fine"  # the others still read
    finally:
        log.close()


def test_collect_deletes_unreferenced_segments_but_never_the_current_one(tmp_path: Path) -> None:
    directory = tmp_path / "bodies"
    log = BodyLog(directory, segment_bytes=1)
    try:
        refs = [log.append([f"b{i}".encode()])[0] for i in range(4)]
        assert [r.segment for r in refs] == [1, 2, 3, 4]
        assert log.read(refs[0]) == b"b0"  # a cached reader must not keep a deleted segment readable

        assert log.collect(3) == [1, 2]
        assert _segments(directory) == [3, 4]
        with pytest.raises(BodyUnreadable, match="missing"):
            log.read(refs[0])
        assert log.collect(3) == []

        assert log.collect(1_000) == [3]  # above everything: all but the one being written
        assert _segments(directory) == [4]
        assert log.collect(None) == []  # nothing referenced: the current segment still stays
        assert _segments(directory) == [4]
        assert log.read(refs[3]) == b"b3"
        (next_ref,) = log.append([b"more"])
        assert next_ref.segment == 5 and log.read(next_ref) == b"more"
    finally:
        log.close()


def test_collect_spares_another_writers_recent_segment(tmp_path: Path) -> None:
    directory = tmp_path / "bodies"
    mine = BodyLog(directory, segment_bytes=1)
    other = BodyLog(directory, segment_bytes=1)  # another process writing beside this one
    try:
        mine.append([b"1"])
        (foreign,) = other.append([b"2"])
        (current,) = mine.append([b"3"])
        assert (foreign.segment, current.segment) == (2, 3)

        assert mine.collect(None) == [1]  # its own old segment goes; the other's recent one stays
        assert _segments(directory) == [2, 3]

        _age(_seg(directory, 2), FOREIGN_SEGMENT_AGE_S + 60)
        assert mine.collect(None) == [2]
        assert _segments(directory) == [3]
        assert mine.read(current) == b"3"
    finally:
        mine.close()
        other.close()


def test_sync_flushes_everything_and_closes_retired_files(tmp_path: Path) -> None:
    directory = tmp_path / "bodies"
    log = BodyLog(directory, segment_bytes=10)
    try:
        (ref,) = log.append([b"a" * 10])
        assert log._unsynced
        log.sync()
        assert log._unsynced == {} and log._retired == {}
        log.sync()  # nothing pending: a no-op
        assert log._unsynced == {}

        old_fd = log._fd
        assert old_fd is not None
        old_inode = os.fstat(old_fd).st_ino
        (rotated,) = log.append([b"b"])  # segment 1 is full: rotates
        assert rotated.segment == 2
        assert log._retired == {1: old_fd} and set(log._unsynced) == {1, 2}
        log.sync()
        assert log._retired == {} and log._unsynced == {}
        try:  # closed: the number is either unused or (if something reopened it) no longer segment 1
            assert os.fstat(old_fd).st_ino != old_inode
        except OSError as exc:
            assert exc.errno == errno.EBADF
        assert log.read(ref) == b"a" * 10 and log.read(rotated) == b"b"
    finally:
        log.close()


# --- partial and failing writes -------------------------------------------------------------------------------------

def _limited_pwritev(limit: int) -> tuple[list[int], object]:
    """A pwritev that writes at most `limit` bytes per call (as a regular file may), and records each call's size."""
    real = os.pwritev
    calls: list[int] = []

    def pwritev(fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        assert len(calls) < 10_000, "pwritev called again and again: the writer does not advance"
        data = b"".join(bytes(b) for b in buffers)[:limit]
        n = real(fd, [data], offset)
        calls.append(n)
        return n

    return calls, pwritev


def test_partial_writes_are_continued_until_every_byte_is_written(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls, pwritev = _limited_pwritev(1000)
    monkeypatch.setattr(PWRITEV, pwritev)
    bodies = [b"", bytes(range(256)) * 10, b"", b"x" * 999, b"y", b"z" * 1000, b"tail"]
    bodies += [f"{i:05d}".encode() for i in range(2500)]  # more buffers than one pwritev call may take
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"HEAD")
        _pwrite_all(fd, bodies, 4)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"HEAD" + b"".join(bodies)
    assert len(calls) > 10 and max(calls) <= 1000

    log = BodyLog(tmp_path / "bodies")
    try:
        refs = log.append(bodies[:7])
        assert [log.read(r) for r in refs] == bodies[:7]
        monkeypatch.undo()  # the real pwritev refuses more than IOV_MAX buffers per call
        refs = log.append(bodies[7:])
        assert [log.read(r) for r in refs] == bodies[7:]
    finally:
        log.close()


def test_a_pwritev_that_writes_nothing_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PWRITEV, lambda fd, buffers, offset: 0)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="wrote nothing"):
            _pwrite_all(fd, [b"abc"], 0)
        _pwrite_all(fd, [b"", b""], 0)  # nothing to write: no call at all
    finally:
        os.close(fd)


def test_a_failed_append_raises_store_error_and_the_next_batch_is_readable(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    log = BodyLog(tmp_path / "bodies")
    real = os.pwritev
    try:
        (first,) = log.append([b"before"])
        calls = 0

        def half_then_full_disk(fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:  # part of the batch lands, then the disk is full
                return real(fd, [bytes(buffers[0])[:3]], offset)
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(PWRITEV, half_then_full_disk)
        with pytest.raises(StoreError, match="could not write delivery bodies") as exc:
            log.append([b"lost-1", b"lost-2"])
        assert not isinstance(exc.value, BodyUnreadable)
        monkeypatch.setattr(PWRITEV, real)

        after = log.append([b"after-1", b"after-2"])
        assert after[0].offset == first.offset + first.length  # overwrites what the failed batch left behind
        assert [log.read(r) for r in after] == [b"after-1", b"after-2"]
        assert log.read(first) == b"before"
    finally:
        log.close()


# --- the Store (SQLite) ---------------------------------------------------------------------------------------------

@pytest.fixture
async def sqlite_store(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Store]:
    path = tmp_path / "t.db"
    shutil.copyfile(sqlite_template, path)
    store = await Store.open(path)
    try:
        yield store
    finally:
        await store.close()


def _db(store: Store) -> Path:
    assert store.url.database is not None
    return Path(store.url.database)


def _bodies(store: Store) -> BodyLog:
    fast = store._engines.fast
    assert fast is not None
    return fast.bodies


def _rows(store: Store) -> dict[str, tuple[bytes, int, int, int, int]]:
    with sqlite3.connect(_db(store)) as conn:
        rows = conn.execute("SELECT delivery_id, body, body_segment, body_offset, body_length, body_crc32 "
                            "FROM deliveries").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _batch() -> list[NewDelivery]:
    return [delivery("g0", body=b'{"n": 0}'), delivery("g1", body=b"", seconds=1),
            delivery("g2", body=bytes(range(256)) * 60, seconds=2), delivery("g3", body=b"\x00\xff", seconds=3)]


async def test_recorded_bodies_live_in_segments_and_come_back_exactly(sqlite_store: Store) -> None:
    batch = _batch()
    assert await sqlite_store.record_deliveries(batch) == [True] * 4
    rows = _rows(sqlite_store)
    segment_file = _seg(_bodies(sqlite_store).directory, 1)
    assert segment_file.read_bytes() == b"".join(d.body for d in batch)
    for d in batch:
        body, segment, offset, length, crc = rows[d.delivery_id]
        assert body == b""
        assert None not in (segment, offset, length, crc)
        assert segment_file.read_bytes()[offset:offset + length] == d.body

    got = await sqlite_store.get_delivery(SOURCE, "g2")
    assert got is not None and got.body == batch[2].body and got.error is None
    claimed = await sqlite_store.claim_pending(10, now=at(10))
    assert [(d.delivery_id, d.body) for d in claimed] == [(d.delivery_id, d.body) for d in batch]
    assert all(d.state == "processing" and d.error is None for d in claimed)


async def test_a_damaged_body_fails_its_delivery_and_spares_the_others(sqlite_store: Store) -> None:
    batch = _batch()
    await sqlite_store.record_deliveries(batch)
    _, segment, offset, _, _ = _rows(sqlite_store)["g2"]
    _flip(_seg(_bodies(sqlite_store).directory, segment), offset + 7)
    seen = await sqlite_store.get_delivery(SOURCE, "g2")  # a read reports the damage and changes nothing
    assert seen is not None and seen.state == "pending" and seen.body == b""
    assert seen.error is not None and seen.error.startswith("unreadable body:") and "CRC" in seen.error

    claimed = await sqlite_store.claim_pending(10, now=at(10))
    assert [d.delivery_id for d in claimed] == ["g0", "g1", "g3"]
    assert [d.body for d in claimed] == [batch[0].body, batch[1].body, batch[3].body]
    assert await sqlite_store.claim_pending(10, now=at(11)) == []  # not handed out later either

    bad = await sqlite_store.get_delivery(SOURCE, "g2")
    assert bad is not None and bad.state == "failed" and bad.body == b""
    assert bad.error is not None and bad.error.startswith("unreadable body:") and "CRC" in bad.error
    with sqlite3.connect(_db(sqlite_store)) as conn:
        stored = conn.execute("SELECT state, error FROM deliveries WHERE delivery_id = 'g2'").fetchone()
    assert stored == ("failed", bad.error)
    assert [d.delivery_id for d in await sqlite_store.unfinished_deliveries()] == ["g0", "g1", "g3"]


async def test_prune_deletes_the_segments_no_row_points_into(sqlite_store: Store) -> None:
    bodies = _bodies(sqlite_store)
    bodies.segment_bytes = 1  # every batch starts a new segment
    for i in range(4):
        await sqlite_store.record_deliveries([delivery(f"g{i}", seconds=i)])
    assert _segments(bodies.directory) == [1, 2, 3, 4]
    claimed = await sqlite_store.claim_pending(10, now=at(10))
    ids = {d.delivery_id: d.id for d in claimed}
    future = at(3600)

    # g0, g1 done; g2 still processing, g3 failed but received after the cut-off.
    assert await sqlite_store.mark_deliveries([ids["g0"], ids["g1"]], "done", now=at(11)) == 2
    await sqlite_store.mark_delivery(ids["g3"], "failed", "boom", now=at(11))
    assert await sqlite_store.prune_deliveries(before=at(3)) == 2
    assert set(_rows(sqlite_store)) == {"g2", "g3"}
    assert _segments(bodies.directory) == [3, 4]
    for gid in ("g2", "g3"):
        kept = await sqlite_store.get_delivery(SOURCE, gid)
        assert kept is not None and kept.body == delivery(gid).body

    await sqlite_store.mark_delivery(ids["g2"], "done", now=at(12))
    assert await sqlite_store.prune_deliveries(before=future) == 2
    assert _rows(sqlite_store) == {}
    assert _segments(bodies.directory) == [4]  # the segment being written stays

    await sqlite_store.record_deliveries([delivery("g9", body=b"new")])
    assert _segments(bodies.directory) == [4, 5]
    (again,) = await sqlite_store.claim_pending(10, now=at(20))
    assert again.body == b"new"


async def test_collecting_while_deliveries_are_recorded_keeps_their_segments(sqlite_store: Store) -> None:
    """Regression: the lowest referenced segment is looked up while the loop goes on recording; a batch recorded
    then, into a segment that a rotation has made not-current, must keep its segment."""
    store = sqlite_store
    bodies = _bodies(store)
    bodies.segment_bytes = 1  # every batch rotates
    await store.record_deliveries([delivery("old")])
    (d,) = await store.claim_pending(1, now=at(1))
    await store.mark_delivery(d.id, "done", now=at(2))
    await store.prune_deliveries(before=at(100))  # no row points into any segment now
    looked_up = asyncio.Event()

    @event.listens_for(store._engines.reader.sync_engine, "after_cursor_execute")
    def after(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "min(" in statement.lower():
            looked_up.set()

    async def record_meanwhile() -> None:
        await looked_up.wait()
        await store.record_deliveries([delivery("new-1")])
        await store.record_deliveries([delivery("new-2")])  # rotates: new-1's segment is no longer current

    await asyncio.gather(store.collect_body_segments(), record_meanwhile())
    for gid in ("new-1", "new-2"):
        got = await store.get_delivery(SOURCE, gid)
        assert got is not None and got.error is None and got.body == b'{"gid": "' + gid.encode() + b'"}'


async def test_bodies_survive_closing_and_reopening(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "t.db"
    shutil.copyfile(sqlite_template, path)
    batch = _batch()
    store = await Store.open(path)
    try:
        assert await store.record_deliveries(batch) == [True] * len(batch)
    finally:
        await store.close()
    first_segment = _seg(Path(str(path) + "-bodies"), 1)
    size = first_segment.stat().st_size

    store = await Store.open(path)
    try:
        claimed = await store.claim_pending(10, now=at(10))
        assert [(d.delivery_id, d.body) for d in claimed] == [(d.delivery_id, d.body) for d in batch]
        await store.record_deliveries([delivery("after", body=b"after reopen")])
        assert _rows(store)["after"][1] == 2  # a new process writes a new segment...
        assert first_segment.stat().st_size == size  # ...and leaves the old one as it was
        got = await store.get_delivery(SOURCE, "after")
        assert got is not None and got.body == b"after reopen"
        await store.mark_deliveries([d.id for d in claimed], "done", now=at(11))
        assert await store.prune_deliveries(before=at(10) + timedelta(days=1)) == 4
        assert first_segment.exists()  # another process's recent segment is spared
    finally:
        await store.close()


def test_a_body_directory_that_cannot_be_made_is_a_clear_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "db-bodies"
    blocker.write_text("a file where the directory should be")
    log = BodyLog(blocker)
    with pytest.raises(StoreError, match="cannot create the delivery body directory"):
        log.append([b"x"])
    blocker.unlink()
    [ref] = log.append([b"x"])  # once the path is free, writing works
    assert log.read(ref) == b"x"
    log.close()
