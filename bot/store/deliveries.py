"""Webhook deliveries: recorded once per (source, delivery id) on the hot path, then claimed and worked off."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, delete, func, select, update

from .base import Access, clip_error, non_empty, utc
from .bodies import BodyLog, BodyRef, BodyUnreadable
from .engine import SQLiteFastPath, parse_sqlite_time, sqlite_time
from .errors import StoreError
from .models import DELIVERY_STATES, Delivery, DeliveryState, NewDelivery
from .schema import deliveries as t

log = logging.getLogger(__name__)

# The SQLite fast path's statements (see SQLiteFastPath): plain SQL, prepared once per connection.
_COLUMNS = ("id, source, delivery_id, event, action, body, received_at, state, attempts, error, updated_at, "
            "body_segment, body_offset, body_length, body_crc32")
_INSERT = ("INSERT INTO deliveries (source, delivery_id, event, action, received_at, body, state, attempts, error, "
           "updated_at, body_segment, body_offset, body_length, body_crc32) "
           "VALUES (?, ?, ?, ?, ?, x'', 'pending', 0, NULL, ?, ?, ?, ?, ?) "
           "ON CONFLICT (source, delivery_id) DO NOTHING")
_CLAIM = ("UPDATE deliveries SET state = 'processing', attempts = attempts + 1, updated_at = ? WHERE id IN "
          "(SELECT id FROM deliveries WHERE state = 'pending' ORDER BY id LIMIT ?) RETURNING " + _COLUMNS)
_MARK_CHUNK = 500  # ids per UPDATE: far below SQLite's bound-parameter limit


def _body(bodies: BodyLog | None, inline: Any, ref: tuple[Any, Any, Any, Any]) -> bytes:
    """The body kept in the row, or read from the segment files when the row holds a reference."""
    if ref[0] is None:
        return bytes(inline)
    if bodies is None:
        raise BodyUnreadable("the body is in a segment file, which only a SQLite store has")
    return bodies.read(BodyRef(*ref))


def _fast_delivery(r: tuple[Any, ...], bodies: BodyLog | None) -> Delivery:
    return Delivery(id=r[0], source=r[1], delivery_id=r[2], event=r[3], action=r[4], body=_body(bodies, r[5], r[11:15]),
                    received_at=parse_sqlite_time(r[6]), state=cast(DeliveryState, r[7]), attempts=r[8], error=r[9],
                    updated_at=parse_sqlite_time(r[10]))


def _delivery(row: Row[Any], bodies: BodyLog | None) -> Delivery:
    """A row as a Delivery; a body that cannot be read comes back empty, with the reason as its `error`."""
    m = row._mapping
    ref = (m["body_segment"], m["body_offset"], m["body_length"], m["body_crc32"])
    error = m["error"]
    try:
        body = _body(bodies, m["body"], ref)
    except BodyUnreadable as exc:
        body, error = b"", f"unreadable body: {exc}"
    return Delivery(id=m["id"], source=m["source"], delivery_id=m["delivery_id"], event=m["event"],
                    action=m["action"], body=body, received_at=m["received_at"],
                    state=cast(DeliveryState, m["state"]), attempts=m["attempts"], error=error,
                    updated_at=m["updated_at"])


class DeliveryStore(Access):
    def _fast_path(self) -> SQLiteFastPath | None:
        """The SQLite hot-path connection, when this is a Store on SQLite and no Store.transaction() is open here.

        (A StoreTransaction has no engines of its own: its operations must run on its one connection.)
        """
        fast: SQLiteFastPath | None = getattr(getattr(self, "_engines", None), "fast", None)
        if fast is not None:
            getattr(self, "_refuse_inside_transaction")()  # noqa: B009  (a Store method; not on Access)
        return fast

    def _bodies(self) -> BodyLog | None:
        fast: SQLiteFastPath | None = getattr(getattr(self, "_engines", None), "fast", None)
        return fast.bodies if fast is not None else None

    def _to_delivery(self, row: Row[Any]) -> Delivery:
        return _delivery(row, self._bodies())

    async def record_deliveries(self, batch: Sequence[NewDelivery]) -> list[bool]:
        """Record a batch in ONE transaction; for each item, True if it is new, False if already known.

        A repeated (source, delivery_id), whether stored earlier or repeated inside this batch, gives False and
        leaves the stored row as it was (`INSERT … ON CONFLICT DO NOTHING`). Each item's `received_at` is kept.
        """
        rows: list[dict[str, Any]] = []
        first: dict[tuple[str, str], int] = {}
        for i, d in enumerate(batch):
            key = (non_empty(d.source, "delivery source", 200), non_empty(d.delivery_id, "delivery id", 100))
            non_empty(d.event, "delivery event", 100)
            if not isinstance(d.body, (bytes, bytearray, memoryview)):
                raise StoreError(f"delivery {d.delivery_id}: body must be the raw bytes, got {type(d.body).__name__}")
            received = utc(d.received_at, f"delivery {d.delivery_id}: received_at")
            if key in first:
                continue
            first[key] = i
            rows.append({"source": key[0], "delivery_id": key[1], "event": d.event, "action": d.action,
                         "received_at": received, "body": bytes(d.body), "state": "pending", "attempts": 0,
                         "error": None, "updated_at": received})
        if not rows:
            return [False] * len(batch)
        fast = self._fast_path()
        if fast is not None:
            inserted = await fast.write(lambda conn: _insert_fast(conn, fast.bodies, rows), "recording deliveries")
            return [first.get((d.source, d.delivery_id)) == i and (d.source, d.delivery_id) in inserted
                    for i, d in enumerate(batch)]
        # executemany of one cached statement: SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues") with
        # RETURNING, and only inserted rows come back. (A `.values(rows)` statement would be compiled anew for
        # every batch, which cost more than the database work itself.)
        stmt = (self._insert(t).on_conflict_do_nothing(index_elements=[t.c.source, t.c.delivery_id])
                .returning(t.c.source, t.c.delivery_id))
        async with self._write() as conn:
            inserted = {(r[0], r[1]) for r in (await conn.execute(stmt, rows)).all()}
        return [first.get((d.source, d.delivery_id)) == i and (d.source, d.delivery_id) in inserted
                for i, d in enumerate(batch)]

    async def get_delivery(self, source: str, delivery_id: str) -> Delivery | None:
        async with self._read() as conn:
            row = (await conn.execute(
                select(t).where(t.c.source == source, t.c.delivery_id == delivery_id))).first()
        return self._to_delivery(row) if row is not None else None

    async def claim_pending(self, limit: int, *, now: datetime) -> list[Delivery]:
        """Atomically move up to `limit` pending deliveries (oldest first) to processing and return them.

        Two workers (or two processes) never claim the same delivery: PostgreSQL skips rows another claimer holds
        (`FOR UPDATE SKIP LOCKED`); SQLite runs the whole statement under its single write lock.
        """
        now = utc(now)
        if limit <= 0:
            return []
        fast = self._fast_path()
        if fast is not None:
            stamp = sqlite_time(now)

            def claim(conn: sqlite3.Connection) -> list[Delivery]:
                claimed = []
                for r in conn.execute(_CLAIM, (stamp, limit)).fetchall():
                    try:
                        claimed.append(_fast_delivery(r, fast.bodies))
                    except BodyUnreadable as exc:  # nothing to process: say why, in the row and the log
                        log.error("delivery %s (%s) cannot be processed: %s", r[2], r[3], exc)
                        conn.execute("UPDATE deliveries SET state = 'failed', error = ? WHERE id = ?",
                                     (clip_error(f"unreadable body: {exc}"), r[0]))
                return claimed

            return sorted(await fast.write(claim, "claiming deliveries"), key=lambda d: d.id)
        ids = (select(t.c.id).where(t.c.state == "pending").order_by(t.c.id).limit(limit)
               .with_for_update(skip_locked=True).scalar_subquery())
        stmt = (update(t).where(t.c.id.in_(ids))
                .values(state="processing", attempts=t.c.attempts + 1, updated_at=now).returning(t))
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((self._to_delivery(r) for r in rows), key=lambda d: d.id)

    async def mark_delivery(self, id: int, state: DeliveryState, error: str | None = None, *,
                            now: datetime) -> Delivery:
        """Set a delivery's state (and error text, cleared when None); raises if the id is unknown."""
        if state not in DELIVERY_STATES:
            raise StoreError(f"delivery state {state!r} is not one of {', '.join(DELIVERY_STATES)}")
        stmt = (update(t).where(t.c.id == id)
                .values(state=state, error=clip_error(error), updated_at=utc(now)).returning(t))
        async with self._write() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise StoreError(f"unknown delivery id {id}")
        return self._to_delivery(row)

    async def mark_deliveries(self, ids: Collection[int], state: DeliveryState, error: str | None = None, *,
                              now: datetime) -> int:
        """Set the state (and error text, cleared when None) of many deliveries in ONE transaction; returns how many.

        All or nothing: if any id is unknown, nothing changes and StoreError names the unknown ids.
        """
        if state not in DELIVERY_STATES:
            raise StoreError(f"delivery state {state!r} is not one of {', '.join(DELIVERY_STATES)}")
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in wanted):
            raise StoreError("delivery ids must be integers")
        now, error = utc(now), clip_error(error)
        fast = self._fast_path()
        if fast is not None:
            stamp = sqlite_time(now)

            def mark(conn: sqlite3.Connection) -> int:
                changed = 0
                for start in range(0, len(wanted), _MARK_CHUNK):
                    chunk = wanted[start:start + _MARK_CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    changed += conn.execute(f"UPDATE deliveries SET state = ?, error = ?, updated_at = ? "
                                            f"WHERE id IN ({marks})", (state, error, stamp, *chunk)).rowcount
                if changed != len(wanted):
                    known = {r[0] for r in conn.execute(
                        f"SELECT id FROM deliveries WHERE id IN ({', '.join('?' * len(wanted))})", wanted)}
                    raise StoreError(f"unknown delivery id(s) {_listing(i for i in wanted if i not in known)}")
                return changed

            return await fast.write(mark, "marking deliveries")
        async with self._write() as conn:
            changed = 0
            for start in range(0, len(wanted), _MARK_CHUNK):
                chunk = wanted[start:start + _MARK_CHUNK]
                result = await conn.execute(update(t).where(t.c.id.in_(chunk))
                                            .values(state=state, error=error, updated_at=now))
                changed += int(result.rowcount)
            if changed != len(wanted):
                known = set((await conn.execute(select(t.c.id).where(t.c.id.in_(wanted)))).scalars())
                # Raising inside the block rolls the whole transaction back: all or nothing.
                raise StoreError(f"unknown delivery id(s) {_listing(i for i in wanted if i not in known)}")
        return changed

    async def unfinished_deliveries(self, limit: int | None = None) -> list[Delivery]:
        """Pending and processing deliveries, oldest first: what a restarted service must pick up again.

        A `processing` delivery at start-up was interrupted by the crash; `requeue_processing` moves such rows
        back to pending so `claim_pending` hands them out again.
        """
        stmt = select(t).where(t.c.state.in_(("pending", "processing"))).order_by(t.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [self._to_delivery(r) for r in rows]

    async def requeue_processing(self, *, now: datetime, claimed_before: datetime | None = None) -> int:
        """Move `processing` deliveries (claimed before `claimed_before`, or all) back to pending; returns how many."""
        now = utc(now)
        stmt = update(t).where(t.c.state == "processing")
        if claimed_before is not None:
            stmt = stmt.where(t.c.updated_at < utc(claimed_before, "claimed_before"))
        async with self._write() as conn:
            result = await conn.execute(stmt.values(state="pending", updated_at=now))
        return int(result.rowcount)

    async def prune_deliveries(self, *, before: datetime) -> int:
        """Delete done/failed deliveries received before `before` (their bodies are the bulk of the database).

        A pruned delivery id is forgotten: a manual redelivery of it after pruning is treated as new, so keep a
        window (days) far longer than anyone redelivers by hand.
        """
        stmt = delete(t).where(t.c.state.in_(("done", "failed")), t.c.received_at < utc(before, "before"))
        async with self._write() as conn:
            result = await conn.execute(stmt)
        await self.collect_body_segments()
        return int(result.rowcount)

    async def collect_body_segments(self) -> list[int]:
        """Delete the body segment files no row points into any more (SQLite); returns their numbers."""
        bodies = self._bodies()
        if bodies is None:
            return []
        # Noted before the query: rows committed while it runs point at this segment or a later one.
        writing = bodies.segment
        async with self._read() as conn:
            lowest = (await conn.execute(select(func.min(t.c.body_segment)))).scalar()
        deleted = bodies.collect(writing if lowest is None else min(lowest, writing))
        if deleted:
            log.info("deleted %d delivery body segment(s): %s", len(deleted), _listing(deleted))
        return deleted


def _insert_fast(conn: sqlite3.Connection, bodies: BodyLog, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Write the bodies, then insert rows pointing at them, skipping known (source, delivery_id) keys; returns the
    keys that were inserted. (A skipped row's body stays in the segment unreferenced, and goes with it.)"""
    refs = bodies.append([r["body"] for r in rows])  # before the rows: a committed row always has its body
    inserted: set[tuple[str, str]] = set()
    cur = conn.cursor()
    for r, ref in zip(rows, refs, strict=True):
        received = sqlite_time(r["received_at"])
        updated = received if r["updated_at"] is r["received_at"] else sqlite_time(r["updated_at"])
        cur.execute(_INSERT, (r["source"], r["delivery_id"], r["event"], r["action"], received, updated,
                              ref.segment, ref.offset, ref.length, ref.crc32))
        if cur.rowcount == 1:
            inserted.add((r["source"], r["delivery_id"]))
    return inserted


def _listing(ids: Any, most: int = 10) -> str:
    items = [str(i) for i in ids]
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")
