"""Run events: each (run, seq) stored once, out-of-order events held until the gap fills, applied exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bot.store import EventConflict, Store, StoreError, UnknownRun, contiguous
from commands.events import Event, make_event

from .helpers import at, new_run

RID = "tb-00000000000e"


def ev(seq: int, type: str = "progress", **data: object) -> Event:
    if type == "progress" and not data:
        data = {"step": seq, "total": 10, "loss": 2.0 - seq / 10, "learning_rate": 1e-4}
    return make_event(RID, seq, 1_772_366_400.125 + seq, type, **data)


@pytest.fixture
async def run_store(store: Store) -> Store:
    await store.create_run(new_run(RID), now=at(0))
    return store


async def last_seq(store: Store) -> int:
    run = await store.get_run(RID)
    assert run is not None
    return run.last_seq


async def test_append_is_idempotent_and_round_trips(run_store: Store) -> None:
    e = ev(0, "accepted", kind="train", model="tiny", host="gpu-1")
    assert await run_store.append_event(e, now=at(1)) == "new"
    assert await run_store.append_event(e, now=at(2)) == "duplicate"  # the agent retried its POST
    (got,) = await run_store.events_after(RID, -1)
    assert got == e and got.ts == 1_772_366_400.125


async def test_same_seq_different_event_is_a_conflict_and_the_first_stays(run_store: Store) -> None:
    await run_store.append_event(ev(0), now=at(1))
    with pytest.raises(EventConflict, match="seq 0 already holds a different event"):
        await run_store.append_event(ev(0, "heartbeat"), now=at(2))
    with pytest.raises(EventConflict):
        await run_store.append_event(ev(0, step=0, total=10, loss=9.9), now=at(2))
    (kept,) = await run_store.events_after(RID, -1)
    assert kept == ev(0)


async def test_unknown_run_and_bad_input(store: Store) -> None:
    with pytest.raises(UnknownRun, match=RID):
        await store.append_event(ev(0), now=at(0))
    with pytest.raises(UnknownRun):
        await store.ready_events(RID)
    with pytest.raises(StoreError, match=r"expected a commands\.events\.Event"):
        await store.append_event({"seq": 0}, now=at(0))  # type: ignore[arg-type]


async def test_out_of_order_events_wait_for_the_gap(run_store: Store) -> None:
    s = run_store
    assert await last_seq(s) == -1
    for seq in (2, 4, 0):
        assert await s.append_event(ev(seq), now=at(seq)) == "new"
    assert [e.seq for e in await s.ready_events(RID)] == [0]
    assert [e.seq for e in await s.events_after(RID, -1)] == [0, 2, 4]
    assert await s.mark_events_applied(RID, expected_last_seq=-1, last_seq=0, now=at(5))
    assert await last_seq(s) == 0
    assert await s.ready_events(RID) == []  # 1 is missing: 2 and 4 wait
    await s.append_event(ev(1), now=at(6))
    assert [e.seq for e in await s.ready_events(RID)] == [1, 2]
    assert await s.mark_events_applied(RID, expected_last_seq=0, last_seq=2, now=at(7),
                                       progress={"step": 2, "total": 10}, phase="train")
    await s.append_event(ev(3), now=at(8))
    assert [e.seq for e in await s.ready_events(RID)] == [3, 4]
    assert [e.seq for e in await s.events_after(RID, 2)] == [3, 4]
    run = await s.get_run(RID)
    assert run is not None and (run.last_seq, run.progress, run.phase) == (2, {"step": 2, "total": 10}, "train")


async def test_applied_marker_is_compare_and_set(run_store: Store) -> None:
    await run_store.append_event(ev(0), now=at(0))
    assert await run_store.mark_events_applied(RID, expected_last_seq=-1, last_seq=0, now=at(1))
    # A second applier that read the same state is told it lost.
    assert not await run_store.mark_events_applied(RID, expected_last_seq=-1, last_seq=0, now=at(2))
    with pytest.raises(StoreError, match="behind"):
        await run_store.mark_events_applied(RID, expected_last_seq=0, last_seq=-1, now=at(2))
    with pytest.raises(UnknownRun):
        await run_store.mark_events_applied("tb-nope", expected_last_seq=-1, last_seq=0, now=at(2))


async def test_phase_of_a_finished_run_is_kept(run_store: Store) -> None:
    await run_store.update_run(RID, now=at(0), phase="eval")
    await run_store.advance_run(RID, "failed", now=at(1), reason="OOM")
    assert await run_store.mark_events_applied(RID, expected_last_seq=-1, last_seq=3, now=at(2), phase="upload")
    run = await run_store.get_run(RID)
    assert run is not None and run.phase == "eval" and run.last_seq == 3 and run.state == "failed"


async def test_concurrent_callbacks_apply_every_event_exactly_once(
        run_store: Store, another: Callable[[], Awaitable[Store]]) -> None:
    """The bot's apply loop: in one transaction lock the run, take the ready events, apply them (here: enqueue one
    outbox write per event), advance last_seq. Callbacks race from several connections, in a shuffled order."""
    stores = [run_store, await another(), await another()]
    applied: list[int] = []

    async def callback(s: Store, e: Event) -> None:
        await s.append_event(e, now=at(e.seq))
        async with s.transaction() as tx:
            run = await tx.get_run(RID, for_update=True)
            assert run is not None
            ready = await tx.ready_events(RID)
            for r in ready:
                assert await tx.enqueue(f"{RID}:event:{r.seq}", "comment_edit", {"seq": r.seq}, at(r.seq),
                                        run_id=RID)
                applied.append(r.seq)
            if ready:
                assert await tx.mark_events_applied(RID, expected_last_seq=run.last_seq, last_seq=ready[-1].seq,
                                                    now=at(100))

    order = [5, 1, 0, 3, 2, 7, 4, 6, 9, 8, 1, 5]  # with two redeliveries
    await asyncio.gather(*(callback(stores[i % 3], ev(seq)) for i, seq in enumerate(order)))
    assert sorted(applied) == list(range(10))  # each exactly once, none lost
    assert await last_seq(run_store) == 9
    assert [i.key for i in await run_store.outbox_for_run(RID)] == sorted(
        (f"{RID}:event:{s}" for s in range(10)), key=lambda k: applied.index(int(k.rsplit(":", 1)[1])))


def test_contiguous_prefix() -> None:
    events = [ev(s) for s in (1, 2, 3, 5)]
    assert [e.seq for e in contiguous(events, 1)] == [1, 2, 3]
    assert [e.seq for e in contiguous(events, 2)] == [2, 3]
    assert contiguous(events, 0) == []
    assert contiguous([], 0) == []
