"""The outbox: external writes decided in a transaction and performed later, once, even across crashes.

Delivery is at-least-once: an item is leased by `due`, performed, then `complete`d. A crash after performing and
before `complete` re-offers the item when the lease ends, so performers of non-idempotent writes (creating a
comment) should first look for their own marker; everything else (dispatch inputs carry the run id, edits are
idempotent) is safe to repeat. Also here: the bot's own message ids per (subject, purpose), for edit-in-place.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, and_, case, delete, or_, select, true, update

from .base import Access, clip_error, non_empty, plain_json, utc
from .errors import StoreError
from .models import BotMessage, OutboxItem, OutboxState
from .schema import bot_messages as tm
from .schema import outbox as t

DEFAULT_LEASE = timedelta(seconds=60)


def _item(row: Row[Any]) -> OutboxItem:
    m = row._mapping
    return OutboxItem(id=m["id"], key=m["key"], kind=m["kind"], target=m["target"], run_id=m["run_id"],
                      payload=m["payload"], state=cast(OutboxState, m["state"]), attempts=m["attempts"],
                      version=m["version"], created_at=m["created_at"], updated_at=m["updated_at"],
                      next_attempt_at=m["next_attempt_at"], leased_until=m["leased_until"],
                      last_error=m["last_error"], result=m["result"])


def _message(row: Row[Any]) -> BotMessage:
    m = row._mapping
    return BotMessage(subject=m["subject"], purpose=m["purpose"], channel=m["channel"], message_id=m["message_id"],
                      extra=m["extra"], created_at=m["created_at"], updated_at=m["updated_at"])


class OutboxStore(Access):
    async def enqueue(self, key: str, kind: str, payload: Mapping[str, Any], now: datetime, *,
                      target: str | None = None, run_id: str | None = None, not_before: datetime | None = None,
                      replace: bool = False) -> bool:
        """Queue a write under an idempotency key; False if the key exists (nothing changes).

        `replace=True` is for writes where only the latest wish matters (edit-in-place of a progress comment):
        a new payload replaces the stored one, bumps `version` and makes the item pending again, even if an older
        version was done; the same payload again is a no-op (False). An item being performed keeps its lease, so
        two versions are never in flight at once. `not_before` delays the first attempt (coalescing, rate limits).
        """
        now = utc(now)
        non_empty(key, "outbox key", 300)
        non_empty(kind, "outbox kind", 32)
        body = plain_json(payload, f"outbox {key}: payload")
        if body is None:
            raise StoreError(f"outbox {key}: payload must be a JSON object, not None")
        when = utc(not_before, "not_before") if not_before is not None else now
        stmt = self._insert(t).values(key=key, kind=kind, target=target, run_id=run_id, payload=body,
                                      state="pending", attempts=0, version=1, created_at=now, updated_at=now,
                                      next_attempt_at=when, leased_until=None, last_error=None, result=None)
        if replace:
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.c.key],
                set_={"payload": stmt.excluded.payload, "kind": stmt.excluded.kind, "target": stmt.excluded.target,
                      "state": "pending", "version": t.c.version + 1, "attempts": 0, "last_error": None,
                      "next_attempt_at": stmt.excluded.next_attempt_at, "updated_at": stmt.excluded.updated_at},
                where=t.c.payload.is_distinct_from(stmt.excluded.payload),
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[t.c.key])
        async with self._write() as conn:
            return (await conn.execute(stmt.returning(t.c.id))).first() is not None

    async def due(self, now: datetime, limit: int = 50, *, lease: timedelta = DEFAULT_LEASE,
                  kinds: Collection[str] | None = None, first: Sequence[str] = ()) -> list[OutboxItem]:
        """Claim up to `limit` pending items whose time has come and lease them for `lease`: items of the kinds in
        `first` before all others, in that order, and oldest first within a kind's rank.

        A leased item is not offered again until `complete`/`fail` or the lease runs out (the performer crashed).
        Concurrent callers (other processes included) get disjoint items.
        """
        now = utc(now)
        if limit <= 0:
            return []
        if lease <= timedelta(0):
            raise StoreError("due: lease must be positive")
        cond = and_(t.c.state == "pending", t.c.next_attempt_at <= now,
                    or_(t.c.leased_until.is_(None), t.c.leased_until <= now))
        if kinds is not None:
            cond = and_(cond, t.c.kind.in_(tuple(kinds)))
        rank: dict[str, int] = {}
        for kind in first:
            rank.setdefault(kind, len(rank))
        order: list[Any] = [t.c.next_attempt_at, t.c.id]
        if rank:
            order.insert(0, case(rank, value=t.c.kind, else_=len(rank)))
        ids = (select(t.c.id).where(cond).order_by(*order).limit(limit)
               .with_for_update(skip_locked=True).scalar_subquery())
        stmt = (update(t).where(t.c.id.in_(ids))
                .values(leased_until=now + lease, attempts=t.c.attempts + 1, updated_at=now).returning(t))
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted((_item(r) for r in rows), key=lambda i: (rank.get(i.kind, len(rank)), i.next_attempt_at, i.id))

    async def complete(self, id: int, result: Mapping[str, Any] | None = None, *, now: datetime,
                       version: int | None = None) -> bool:
        """Record a performed item and its result (e.g. the created comment id); True if it is now done.

        With `version` (the item's version when it was claimed) an item that got a newer payload meanwhile stays
        pending, so the newer version is performed too; its result is still stored.
        """
        now = utc(now)
        body = plain_json(result, f"outbox item {id}: result")
        done = t.c.version == version if version is not None else true()
        stmt = (update(t).where(t.c.id == id, t.c.state == "pending")
                .values(state=case((done, "done"), else_=t.c.state), result=body, leased_until=None,
                        last_error=None, updated_at=now)
                .returning(t.c.state))
        async with self._write() as conn:
            state = (await conn.execute(stmt)).scalar()
            if state is None and (await conn.execute(select(t.c.id).where(t.c.id == id))).first() is None:
                raise StoreError(f"unknown outbox item {id}")
        return bool(state == "done")

    async def fail(self, id: int, error: str, retry_at: datetime | None, *, now: datetime,
                   version: int | None = None) -> OutboxItem:
        """Record a failed attempt: retry at `retry_at`, or give up (state failed) when it is None.

        An item superseded by a newer version (see `complete`) is never given up: the new payload gets its try.
        """
        now = utc(now)
        retry = utc(retry_at, "retry_at") if retry_at is not None else None
        async with self._write() as conn:
            row = (await conn.execute(select(t).where(t.c.id == id).with_for_update())).first()
            if row is None:
                raise StoreError(f"unknown outbox item {id}")
            item = _item(row)
            superseded = version is not None and item.version != version
            values: dict[str, Any] = {"leased_until": None, "last_error": clip_error(error), "updated_at": now}
            if item.state == "pending":
                if retry is None and not superseded:
                    values["state"] = "failed"
                else:
                    values["next_attempt_at"] = retry if retry is not None else now
            new = (await conn.execute(update(t).where(t.c.id == id).values(values).returning(t))).one()
        return _item(new)

    async def get_by_key(self, key: str) -> OutboxItem | None:
        async with self._read() as conn:
            row = (await conn.execute(select(t).where(t.c.key == key))).first()
        return _item(row) if row is not None else None

    async def outbox_for_run(self, run_id: str) -> list[OutboxItem]:
        async with self._read() as conn:
            rows = (await conn.execute(select(t).where(t.c.run_id == run_id).order_by(t.c.id))).all()
        return [_item(r) for r in rows]

    async def prune_outbox(self, *, before: datetime) -> int:
        """Delete done items last touched before `before` (their keys can then be reused)."""
        stmt = delete(t).where(t.c.state == "done", t.c.updated_at < utc(before, "before"))
        async with self._write() as conn:
            result = await conn.execute(stmt)
        return int(result.rowcount)

    # --- the bot's own messages --------------------------------------------------------------------------------------

    async def remember_message(self, subject: str, purpose: str, message_id: str, *, now: datetime,
                               channel: str = "github", extra: Mapping[str, Any] | None = None,
                               replace: bool = False) -> BotMessage:
        """Remember the bot's message for (subject, purpose), e.g. (run id, "sticky") → comment id.

        First writer wins unless `replace`: the returned message is the one stored, so a performer that lost a
        race learns the winner's id (and can delete its own duplicate).
        """
        now = utc(now)
        non_empty(subject, "message subject", 300)
        non_empty(purpose, "message purpose", 64)
        non_empty(message_id, "message id", 200)
        stmt = self._insert(tm).values(subject=subject, purpose=purpose, channel=channel, message_id=message_id,
                                       extra=plain_json(extra, "message extra"), created_at=now, updated_at=now)
        if replace:
            stmt = stmt.on_conflict_do_update(
                index_elements=[tm.c.subject, tm.c.purpose],
                set_={"channel": stmt.excluded.channel, "message_id": stmt.excluded.message_id,
                      "extra": stmt.excluded.extra, "updated_at": stmt.excluded.updated_at})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[tm.c.subject, tm.c.purpose])
        async with self._write() as conn:
            await conn.execute(stmt)
            row = (await conn.execute(select(tm).where(tm.c.subject == subject, tm.c.purpose == purpose))).one()
        return _message(row)

    async def message_for(self, subject: str, purpose: str) -> BotMessage | None:
        async with self._read() as conn:
            row = (await conn.execute(select(tm).where(tm.c.subject == subject, tm.c.purpose == purpose))).first()
        return _message(row) if row is not None else None
