"""Run events: stored once per (run, seq) whatever order they arrive in, and handed back in seq order to apply."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, select

from commands.events import Event, EventType

from .base import Access, checked_json, utc
from .errors import EventConflict, StoreError, UnknownRun
from .models import AppendResult
from .schema import run_events as t
from .schema import runs


def _event(row: Row[Any]) -> Event:
    m = row._mapping
    return Event(run_id=m["run_id"], seq=m["seq"], ts=float(m["ts"]), type=cast(EventType, m["type"]),
                 data=dict(m["payload"]))


def contiguous(events: list[Event], next_seq: int) -> list[Event]:
    """The prefix of seq-sorted `events` that starts at `next_seq` with no gap (what may be applied now)."""
    ready: list[Event] = []
    for ev in events:
        if ev.seq < next_seq:
            continue
        if ev.seq != next_seq:
            break
        ready.append(ev)
        next_seq += 1
    return ready


class EventStore(Access):
    async def append_event(self, event: Event, *, now: datetime) -> AppendResult:
        """Store an event: "new" the first time, "duplicate" when the same (run, seq) holds the same event.

        The same (run, seq) with a different type or payload raises EventConflict (the agent broke the protocol;
        the first event stays). An event of an unknown run raises UnknownRun. Storing does not apply: see
        `ready_events` and `mark_events_applied`.
        """
        if not isinstance(event, Event):
            raise StoreError(f"append_event: expected a commands.events.Event, got {type(event).__name__}")
        payload = checked_json(dict(event.data), f"event {event.run_id}#{event.seq}")
        row = {"run_id": event.run_id, "seq": event.seq, "type": event.type, "ts": float(event.ts),
               "received_at": utc(now), "payload": payload}
        stmt = (self._insert(t).values(row).on_conflict_do_nothing(index_elements=[t.c.run_id, t.c.seq])
                .returning(t.c.seq))
        async with self._write() as conn:
            if (await conn.execute(select(runs.c.run_id).where(runs.c.run_id == event.run_id))).first() is None:
                raise UnknownRun(event.run_id)
            if (await conn.execute(stmt)).first() is not None:
                return "new"
            stored = (await conn.execute(
                select(t).where(t.c.run_id == event.run_id, t.c.seq == event.seq))).one()
        old = _event(stored)
        if old.type != event.type or dict(old.data) != payload or old.ts != float(event.ts):
            raise EventConflict(f"run {event.run_id}: seq {event.seq} already holds a different event "
                                f"({old.type}); refusing {event.type}")
        return "duplicate"

    async def events_after(self, run_id: str, seq: int, *, limit: int | None = None) -> list[Event]:
        """Stored events of a run with seq > `seq`, in seq order (gaps included: they are not applied yet)."""
        stmt = select(t).where(t.c.run_id == run_id, t.c.seq > seq).order_by(t.c.seq)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            return [_event(r) for r in (await conn.execute(stmt)).all()]

    async def ready_events(self, run_id: str, *, limit: int = 1000) -> list[Event]:
        """Events that can be applied now: stored, not yet applied, and contiguous from one past the run's `last_seq`.

        An event that arrived ahead of a gap stays stored and comes back here once the missing one is appended.
        Apply them in order, then call `mark_events_applied(run_id, expected_last_seq=next-1, last_seq=...)`.
        """
        async with self._read() as conn:
            last = (await conn.execute(select(runs.c.last_seq).where(runs.c.run_id == run_id))).scalar()
            if last is None:
                raise UnknownRun(run_id)
            rows = (await conn.execute(select(t).where(t.c.run_id == run_id, t.c.seq > last)
                                       .order_by(t.c.seq).limit(limit))).all()
        return contiguous([_event(r) for r in rows], int(last) + 1)
