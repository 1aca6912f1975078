"""Webhook deliveries: dedupe per (source, GUID), claiming without double work, and pick-up after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from bot.store import NewDelivery, Store, StoreError

from .helpers import at, delivery


async def test_batch_reports_new_and_duplicate_per_item(store: Store) -> None:
    assert [d is not None for d in await store.record_deliveries([delivery("g1"), delivery("g2")])] == [True, True]
    # Redelivery reuses the GUID; a second App may see the same GUID (a different source): that one is new.
    batch = [delivery("g2"), delivery("g3"), delivery("g3"), delivery("g2", source="github:app/2")]
    assert [d is not None for d in await store.record_deliveries(batch)] == [False, True, False, True]
    assert [d is not None for d in await store.record_deliveries([])] == []
    got = await store.unfinished_deliveries()
    assert [(d.source, d.delivery_id) for d in got] == [
        ("github:app/1", "g1"), ("github:app/1", "g2"), ("github:app/1", "g3"), ("github:app/2", "g2")]


async def test_duplicate_keeps_the_first_body_and_raw_bytes_survive(store: Store) -> None:
    raw = b'{"comment": {"body": "/train \xe4\xb8\xad"}}\r\n\x00\xff'  # not valid UTF-8 at the end: bytes are bytes
    assert [d is not None for d in await store.record_deliveries([delivery("g1", body=raw, seconds=5)])] == [True]
    assert [d is not None for d in await store.record_deliveries([delivery("g1", body=b"{}", seconds=9)])] == [False]
    got = await store.get_delivery("github:app/1", "g1")
    assert got is not None and got.body == raw and got.received_at == at(5)
    assert got.state == "pending" and got.attempts == 0 and got.action == "created"
    assert await store.get_delivery("github:app/1", "nope") is None


async def test_a_delivery_recorded_leased_is_its_receivers_until_the_lease_runs_out(store: Store) -> None:
    """The intake's write for a replica that works the delivery off from memory: stored leased to it, first attempt
    counted, handed back as stored (body included); nobody claims it until the lease runs out."""
    stored = await store.record_deliveries([delivery("g1", seconds=1), delivery("g1"), delivery("g2", seconds=2)],
                                           lease_to="replica-a", lease=timedelta(seconds=30), now=at(5))
    assert [d is not None for d in stored] == [True, False, True]
    for d in (stored[0], stored[2]):
        assert d is not None and d == await store.get_delivery(d.source, d.delivery_id)
        assert (d.state, d.attempts, d.claimed_by, d.leased_until) == ("processing", 1, "replica-a", at(35))
    assert stored[0] is not None and stored[0].received_at == at(1) and stored[0].body == delivery("g1").body
    assert await store.claim_pending(10, now=at(34), owner="replica-b") == []
    taken = await store.claim_pending(10, now=at(36), owner="replica-b")  # replica-a died: its leases ran out
    assert [(d.delivery_id, d.attempts, d.claimed_by) for d in taken] == [("g1", 2, "replica-b"),
                                                                        ("g2", 2, "replica-b")]
    with pytest.raises(StoreError, match="now"):  # a lease needs the time it starts
        await store.record_deliveries([delivery("g3")], lease_to="replica-a")


async def test_claim_hands_out_oldest_first_and_each_once(store: Store) -> None:
    await store.record_deliveries([delivery(f"g{i}", seconds=i) for i in range(5)])
    first = await store.claim_pending(2, now=at(10))
    assert [d.delivery_id for d in first] == ["g0", "g1"]
    assert all(d.state == "processing" and d.attempts == 1 and d.updated_at == at(10) for d in first)
    rest = await store.claim_pending(10, now=at(11))
    assert [d.delivery_id for d in rest] == ["g2", "g3", "g4"]
    assert await store.claim_pending(10, now=at(12)) == []
    assert await store.claim_pending(0, now=at(12)) == []


async def test_concurrent_claimers_never_share_a_delivery(store: Store,
                                                          another: Callable[[], Awaitable[Store]]) -> None:
    await store.record_deliveries([delivery(f"g{i:03}") for i in range(60)])
    others = [await another() for _ in range(2)]

    async def drain(s: Store) -> list[str]:
        got: list[str] = []
        while batch := await s.claim_pending(4, now=at(1)):
            got += [d.delivery_id for d in batch]
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(drain(store), *(drain(s) for s in others))
    claimed = [gid for r in results for gid in r]
    assert sorted(claimed) == [f"g{i:03}" for i in range(60)]  # every one, none twice


async def test_mark_and_restart_pick_up(store: Store) -> None:
    await store.record_deliveries([delivery(f"g{i}", seconds=i) for i in range(4)])
    a, b, c = await store.claim_pending(3, now=at(10))
    done = await store.mark_delivery(a.id, "done", now=at(11))
    assert done.state == "done" and done.error is None and done.updated_at == at(11)
    failed = await store.mark_delivery(b.id, "failed", "GitHub said 502" + "x" * 10_000, now=at(12))
    assert failed.state == "failed" and failed.error is not None
    assert failed.error.startswith("GitHub said 502") and len(failed.error) <= 4000
    # "Crash" here: c is processing, g3 pending. A restart sees both, requeues c and claims it again.
    unfinished = await store.unfinished_deliveries()
    assert [(d.delivery_id, d.state) for d in unfinished] == [("g2", "processing"), ("g3", "pending")]
    assert await store.requeue_processing(now=at(20), claimed_before=at(10)) == 0  # claimed at 10, not before
    assert await store.requeue_processing(now=at(20)) == 1
    again = await store.claim_pending(10, now=at(21))
    assert [(d.delivery_id, d.attempts) for d in again] == [("g2", 2), ("g3", 1)]
    assert c.id == again[0].id


async def test_mark_rejects_bad_state_and_unknown_id(store: Store) -> None:
    await store.record_deliveries([delivery("g1")])
    (d,) = await store.claim_pending(1, now=at(1))
    with pytest.raises(StoreError, match="'finished' is not one of"):
        await store.mark_delivery(d.id, "finished", now=at(2))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="unknown delivery id 999"):
        await store.mark_delivery(999, "done", now=at(2))


async def test_prune_forgets_only_old_finished_deliveries(store: Store) -> None:
    await store.record_deliveries([delivery("old-done", seconds=0), delivery("old-pending", seconds=1),
                                   delivery("new-done", seconds=100)])
    for d in await store.claim_pending(10, now=at(200)):
        if d.delivery_id != "old-pending":
            await store.mark_delivery(d.id, "done", now=at(200))
    assert await store.prune_deliveries(before=at(50)) == 1
    assert await store.get_delivery("github:app/1", "old-done") is None
    assert await store.get_delivery("github:app/1", "old-pending") is not None
    assert await store.get_delivery("github:app/1", "new-done") is not None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (NewDelivery("github:app/1", "", "issue_comment", b"{}", at(0)), "delivery id: must be a non-empty"),
        (NewDelivery("", "g", "issue_comment", b"{}", at(0)), "delivery source: must be a non-empty"),
        (NewDelivery("s", "g", "issue_comment", "{}", at(0)), "body must be the raw bytes"),  # type: ignore[arg-type]
        (NewDelivery("s", "g", "issue_comment", b"{}", at(0).replace(tzinfo=None)), "naive datetime"),
    ],
)
async def test_bad_delivery_input_is_refused_and_nothing_of_the_batch_is_stored(
        store: Store, bad: NewDelivery, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        await store.record_deliveries([delivery("fine"), bad])
    assert await store.unfinished_deliveries() == []


async def test_batch_in_a_rolled_back_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError, match="crash"):
        async with store.transaction() as tx:
            assert [d is not None for d in await tx.record_deliveries([delivery("g1")])] == [True]
            raise RuntimeError("crash before commit")
    assert [d is not None for d in await store.record_deliveries([delivery("g1")])] == [True]


async def test_a_claim_is_a_lease_that_another_replica_takes_over_when_it_runs_out(store: Store) -> None:
    """Issue 17, item 2: a dead replica's deliveries are not stranded until a restart; a live one's are untouched."""
    await store.record_deliveries([delivery(f"g{i}", seconds=i) for i in range(3)])
    lease = timedelta(seconds=30)
    a0, a1 = await store.claim_pending(2, now=at(10), owner="replica-a", lease=lease)
    assert (a0.claimed_by, a0.leased_until, a0.attempts) == ("replica-a", at(40), 1)
    # Replica b, within a's lease, gets only what nobody holds.
    (b2,) = await store.claim_pending(10, now=at(20), owner="replica-b", lease=lease)
    assert b2.delivery_id == "g2"
    # a renews one lease while it works on it; the other runs out (a died while holding it).
    assert await store.renew_leases([a0.id], owner="replica-a", now=at(35), lease=lease) == {a0.id}
    assert await store.claim_pending(10, now=at(39), owner="replica-b", lease=lease) == []
    (taken,) = await store.claim_pending(10, now=at(41), owner="replica-b", lease=lease)
    assert (taken.id, taken.claimed_by, taken.attempts, taken.leased_until) == (a1.id, "replica-b", 2, at(71))
    # a, come back, cannot renew what b took over; b's start-up requeue touches only b's own leases.
    assert await store.renew_leases([a0.id, a1.id], owner="replica-a", now=at(42), lease=lease) == {a0.id}
    assert await store.requeue_processing(now=at(43), owner="replica-c") == 0
    assert await store.requeue_processing(now=at(43), owner="replica-b") == 2
    states = {d.delivery_id: (d.state, d.claimed_by) for d in await store.unfinished_deliveries()}
    assert states == {"g0": ("processing", "replica-a"), "g1": ("pending", None), "g2": ("pending", None)}


async def test_released_deliveries_go_back_at_once_and_failed_attempts_wait_for_their_retry(store: Store) -> None:
    await store.record_deliveries([delivery(f"g{i}", seconds=i) for i in range(2)])
    d0, d1 = await store.claim_pending(2, now=at(10), owner="a")
    # A replica shutting down gives back what it never started: anybody's at once, the attempt not counted.
    assert await store.release_deliveries([d1.id], owner="b", now=at(11)) == 0  # not b's to give
    assert await store.release_deliveries([d1.id], owner="a", now=at(11)) == 1
    # A failed attempt waits in pending until its retry time, keeping the error.
    failed = await store.retry_delivery(d0.id, "GitHub 502", retry_at=at(50), now=at(12))
    assert (failed.state, failed.error, failed.next_attempt_at, failed.claimed_by) == ("pending", "GitHub 502", at(50),
                                                                                       None)
    (again,) = await store.claim_pending(10, now=at(13), owner="b")
    assert (again.id, again.attempts) == (d1.id, 1)
    (retried,) = await store.claim_pending(10, now=at(50), owner="b")
    assert (retried.id, retried.attempts, retried.next_attempt_at) == (d0.id, 2, None)
    done = await store.mark_delivery(retried.id, "done", now=at(51))
    assert (done.leased_until, done.claimed_by) == (None, "b")
    with pytest.raises(StoreError, match="unknown delivery id"):
        await store.retry_delivery(999_999, "x", retry_at=at(60), now=at(60))
