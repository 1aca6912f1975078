"""Webhook deliveries: recorded once per (source, delivery id) on the hot path, then leased by one replica at a time
and worked off; a lease that runs out (its replica died) is anybody's to take, a failed attempt waits for its retry."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, and_, delete, or_, select, update

from .base import Access, clip_error, non_empty, utc
from .errors import StoreError
from .models import DELIVERY_STATES, Delivery, DeliveryState, NewDelivery
from .schema import deliveries as t
from .schema import delivery_bodies as b

_MARK_CHUNK = 500  # ids per UPDATE: far below SQLite's bound-parameter limit
DEFAULT_LEASE = timedelta(seconds=60)


def _delivery(row: Row[Any], body: bytes | None = None) -> Delivery:
    m = row._mapping
    return Delivery(id=m["id"], source=m["source"], delivery_id=m["delivery_id"], event=m["event"],
                    action=m["action"], body=bytes(m["body"]) if body is None else body, received_at=m["received_at"],
                    state=cast(DeliveryState, m["state"]), attempts=m["attempts"], error=m["error"],
                    updated_at=m["updated_at"], claimed_by=m["claimed_by"], leased_until=m["leased_until"],
                    next_attempt_at=m["next_attempt_at"])


class DeliveryStore(Access):
    _record_stmt: Any = None  # the INSERT of `record_deliveries`, built on first use (it depends on the dialect)

    async def record_deliveries(self, batch: Sequence[NewDelivery], *, lease_to: str | None = None,
                                lease: timedelta = DEFAULT_LEASE, now: datetime | None = None) -> list[Delivery | None]:
        """Record a batch in ONE transaction; for each item, the stored delivery if it is new, None if already known.

        A repeated (source, delivery_id), whether stored earlier or repeated inside this batch, gives None and leaves
        the stored row as it was (`INSERT … ON CONFLICT DO NOTHING`). Each item's `received_at` is kept. New rows are
        pending, or, with `lease_to`, already leased to that replica until `now + lease` (its first attempt, as if it
        had claimed them: the replica that received them works them off from memory, and if it dies they are
        anybody's once the lease runs out).
        """
        rows: dict[tuple[str, str], dict[str, Any]] = {}  # the first item of each key, by key
        first: dict[tuple[str, str], int] = {}
        leased = {} if lease_to is None else {"state": "processing", "attempts": 1, "claimed_by": lease_to,
                                               "leased_until": utc(now, "now") + lease}  # type: ignore[arg-type]
        for i, d in enumerate(batch):
            key = (non_empty(d.source, "delivery source", 200), non_empty(d.delivery_id, "delivery id", 100))
            non_empty(d.event, "delivery event", 100)
            if not isinstance(d.body, (bytes, bytearray, memoryview)):
                raise StoreError(f"delivery {d.delivery_id}: body must be the raw bytes, got {type(d.body).__name__}")
            received = utc(d.received_at, f"delivery {d.delivery_id}: received_at")
            if key in first:
                continue
            first[key] = i
            rows[key] = {"source": key[0], "delivery_id": key[1], "event": d.event, "action": d.action,
                         "received_at": received, "state": "pending", "attempts": 0, "error": None,
                         "updated_at": received, "claimed_by": None, "leased_until": None, **leased}
        if not rows:
            return [None] * len(batch)
        # executemany of one statement built once: SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues")
        # with RETURNING, and only inserted rows come back. (A statement built per batch costs its cache key every
        # time, and a `.values(rows)` one a compilation: either cost more than the database work itself.)
        if self._record_stmt is None:
            self._record_stmt = (self._insert(t).on_conflict_do_nothing(index_elements=[t.c.source, t.c.delivery_id])
                                 .returning(t.c.id, t.c.source, t.c.delivery_id))
        async with self._write() as conn:
            new = {(r[1], r[2]): r[0] for r in (await conn.execute(self._record_stmt, list(rows.values()))).all()}
            if new:
                await conn.execute(b.insert(), [{"delivery": id, "body": bytes(batch[first[key]].body)}
                                                for key, id in new.items()])
        return [Delivery(id=new[key], body=bytes(d.body), **rows[key]) if first.get(key) == i and key in new else None
                for i, d in enumerate(batch) for key in [(d.source, d.delivery_id)]]

    async def get_delivery(self, source: str, delivery_id: str) -> Delivery | None:
        async with self._read() as conn:
            row = (await conn.execute(_with_body().where(t.c.source == source, t.c.delivery_id == delivery_id))).first()
        return _delivery(row) if row is not None else None

    async def claim_pending(self, limit: int, *, now: datetime, owner: str = "",
                            lease: timedelta = DEFAULT_LEASE) -> list[Delivery]:
        """Lease up to `limit` deliveries (oldest first) to replica `owner` until `now + lease` and return them.

        Offered: pending deliveries whose retry time has come, and `processing` ones whose lease ran out (the
        replica holding them died; a lease from before leases existed counts as run out). Two claimers (or
        processes) never get the same delivery: PostgreSQL skips rows another claimer holds (`FOR UPDATE SKIP
        LOCKED`); SQLite runs the whole statement under its single write lock. Every claim counts an attempt.
        """
        now = utc(now)
        if limit <= 0:
            return []
        if lease <= timedelta(0):
            raise StoreError("claim_pending: lease must be positive")
        cond = or_(and_(t.c.state == "pending", or_(t.c.next_attempt_at.is_(None), t.c.next_attempt_at <= now)),
                   and_(t.c.state == "processing", or_(t.c.leased_until.is_(None), t.c.leased_until <= now)))
        ids = (select(t.c.id).where(cond).order_by(t.c.id).limit(limit)
               .with_for_update(skip_locked=True).scalar_subquery())
        stmt = (update(t).where(t.c.id.in_(ids))
                .values(state="processing", attempts=t.c.attempts + 1, updated_at=now, claimed_by=owner,
                        leased_until=now + lease, next_attempt_at=None).returning(t))
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).all()
            found = await self._bodies(conn, [r._mapping["id"] for r in rows])
        return sorted((_delivery(r, found[r._mapping["id"]]) for r in rows), key=lambda d: d.id)

    async def _update_one(self, id: int, stmt: Any) -> Delivery:
        """Run an UPDATE … RETURNING of delivery `id` and return it with its body; raises if the id is unknown."""
        async with self._write() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                raise StoreError(f"unknown delivery id {id}")
            found = await self._bodies(conn, [id])
        return _delivery(row, found.get(id, b""))

    async def _bodies(self, conn: Any, ids: list[int]) -> dict[int, bytes]:
        if not ids:
            return {}
        return {r[0]: bytes(r[1]) for r in (await conn.execute(select(b.c.delivery, b.c.body)
                                                               .where(b.c.delivery.in_(ids)))).all()}

    async def renew_leases(self, ids: Collection[int], *, owner: str, now: datetime,
                           lease: timedelta = DEFAULT_LEASE) -> set[int]:
        """Extend `owner`'s leases on these deliveries to `now + lease`; returns the ids it still holds (a lease
        that ran out and was taken over by another replica is not renewed)."""
        wanted = sorted(set(ids))
        now = utc(now)
        held: set[int] = set()
        async with self._write() as conn:
            for start in range(0, len(wanted), _MARK_CHUNK):
                stmt = (update(t).where(t.c.id.in_(wanted[start:start + _MARK_CHUNK]), t.c.state == "processing",
                                        t.c.claimed_by == owner)
                        .values(leased_until=now + lease).returning(t.c.id))
                held.update((await conn.execute(stmt)).scalars())
        return held

    async def release_deliveries(self, ids: Collection[int], *, owner: str, now: datetime) -> int:
        """Give back leased deliveries that were never started (a replica shutting down): pending again at once,
        for any replica, without counting the attempt. Returns how many were given back."""
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        changed = 0
        async with self._write() as conn:
            for start in range(0, len(wanted), _MARK_CHUNK):
                result = await conn.execute(
                    update(t).where(t.c.id.in_(wanted[start:start + _MARK_CHUNK]), t.c.state == "processing",
                                    t.c.claimed_by == owner)
                    .values(state="pending", attempts=t.c.attempts - 1, claimed_by=None, leased_until=None,
                            updated_at=utc(now)))
                changed += int(result.rowcount)
        return changed

    async def retry_delivery(self, id: int, error: str, *, retry_at: datetime, now: datetime) -> Delivery:
        """A failed attempt that will be tried again: pending, not before `retry_at`, with the error kept."""
        stmt = (update(t).where(t.c.id == id)
                .values(state="pending", error=clip_error(error), next_attempt_at=utc(retry_at, "retry_at"),
                        claimed_by=None, leased_until=None, updated_at=utc(now)).returning(t))
        return await self._update_one(id, stmt)

    async def mark_delivery(self, id: int, state: DeliveryState, error: str | None = None, *,
                            now: datetime) -> Delivery:
        """Set a delivery's state (and error text, cleared when None); raises if the id is unknown."""
        if state not in DELIVERY_STATES:
            raise StoreError(f"delivery state {state!r} is not one of {', '.join(DELIVERY_STATES)}")
        stmt = (update(t).where(t.c.id == id)
                .values(state=state, error=clip_error(error), updated_at=utc(now), leased_until=None).returning(t))
        return await self._update_one(id, stmt)

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
        async with self._write() as conn:
            changed = 0
            for start in range(0, len(wanted), _MARK_CHUNK):
                chunk = wanted[start:start + _MARK_CHUNK]
                result = await conn.execute(update(t).where(t.c.id.in_(chunk))
                                            .values(state=state, error=error, updated_at=now, leased_until=None))
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
        stmt = _with_body().where(t.c.state.in_(("pending", "processing"))).order_by(t.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_delivery(r) for r in rows]

    async def requeue_processing(self, *, now: datetime, claimed_before: datetime | None = None,
                                 owner: str | None = None) -> int:
        """Move `processing` deliveries back to pending (only `owner`'s leases when given: a restarting replica
        takes back its own, never a live replica's; and only those claimed before `claimed_before`, when given);
        returns how many."""
        now = utc(now)
        stmt = update(t).where(t.c.state == "processing")
        if owner is not None:
            stmt = stmt.where(t.c.claimed_by == owner)
        if claimed_before is not None:
            stmt = stmt.where(t.c.updated_at < utc(claimed_before, "claimed_before"))
        async with self._write() as conn:
            result = await conn.execute(stmt.values(state="pending", updated_at=now, claimed_by=None,
                                                    leased_until=None))
        return int(result.rowcount)

    async def prune_deliveries(self, *, before: datetime) -> int:
        """Delete done/failed deliveries received before `before` (their bodies are the bulk of the database).

        A pruned delivery id is forgotten: a manual redelivery of it after pruning is treated as new, so keep a
        window (days) far longer than anyone redelivers by hand.
        """
        old = select(t.c.id).where(t.c.state.in_(("done", "failed")), t.c.received_at < utc(before, "before"))
        async with self._write() as conn:
            # Bodies first and explicitly: a SQLite connection opened without `PRAGMA foreign_keys` would not cascade.
            await conn.execute(delete(b).where(b.c.delivery.in_(old)))
            result = await conn.execute(delete(t).where(t.c.id.in_(old)))
        return int(result.rowcount)


def _with_body() -> Any:
    return select(t, b.c.body).select_from(t.join(b, b.c.delivery == t.c.id))


def _listing(ids: Any, most: int = 10) -> str:
    items = [str(i) for i in ids]
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")
