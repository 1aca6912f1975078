"""The outbox: decided writes survive crashes, are never doubled by a retry, and edits coalesce to the latest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from bot.store import Store, StoreError

from .helpers import at, delivery, new_run

LEASE = timedelta(seconds=30)


async def test_enqueue_is_idempotent_per_key(store: Store) -> None:
    assert await store.enqueue("tb-1:dispatch", "dispatch", {"inputs": {"run_id": "tb-1"}}, at(0), target="o/r",
                               run_id="tb-1")
    assert not await store.enqueue("tb-1:dispatch", "dispatch", {"inputs": {"run_id": "CHANGED"}}, at(1))
    item = await store.get_by_key("tb-1:dispatch")
    assert item is not None
    assert (item.kind, item.target, item.run_id, item.payload, item.state, item.attempts, item.version) == (
        "dispatch", "o/r", "tb-1", {"inputs": {"run_id": "tb-1"}}, "pending", 0, 1)
    assert item.created_at == item.next_attempt_at == at(0)
    assert await store.get_by_key("nope") is None


async def test_due_leases_items_and_a_crashed_performer_gets_them_back(store: Store) -> None:
    await store.enqueue("a", "comment_create", {"body": "a"}, at(0))
    await store.enqueue("b", "slack", {"text": "b"}, at(0), not_before=at(10))
    (a,) = await store.due(at(1), lease=LEASE)
    assert a.key == "a" and a.attempts == 1 and a.leased_until == at(31)
    assert await store.due(at(2), lease=LEASE) == []  # leased: not handed out twice
    # The performer crashed without complete(): once the lease ends, the item comes back.
    assert [i.key for i in await store.due(at(31), lease=LEASE)] == ["a", "b"]
    assert [i.key for i in await store.due(at(100), lease=LEASE, kinds=["slack"])] == ["b"]
    with pytest.raises(StoreError, match="lease must be positive"):
        await store.due(at(100), lease=timedelta(0))


async def test_due_hands_out_the_kinds_named_first_before_older_items(store: Store) -> None:
    # Under a burst the dispatches go to GitHub before the reactions and cards decided earlier (issue 17, item 4).
    for i in range(3):
        await store.enqueue(f"react:{i}", "reaction", {"i": i}, at(i))
        await store.enqueue(f"card:{i}", "comment_create", {"i": i}, at(i))
        await store.enqueue(f"dispatch:{i}", "dispatch", {"i": i}, at(i))
    first = ("dispatch", "comment_create")
    assert [i.key for i in await store.due(at(10), 4, lease=LEASE, first=first)] == [
        "dispatch:0", "dispatch:1", "dispatch:2", "card:0"]
    assert [i.key for i in await store.due(at(10), 4, lease=LEASE, first=first)] == [
        "card:1", "card:2", "react:0", "react:1"]
    # Without `first`: oldest first, whatever the kind.
    await store.enqueue("late-dispatch", "dispatch", {}, at(20))
    await store.enqueue("early-react", "reaction", {}, at(5))
    assert [i.key for i in await store.due(at(30), 3, lease=LEASE)] == ["react:2", "early-react", "late-dispatch"]


async def test_complete_records_the_result_and_retires_the_item(store: Store) -> None:
    await store.enqueue("c", "comment_create", {"body": "hello"}, at(0))
    (c,) = await store.due(at(0), lease=LEASE)
    assert await store.complete(c.id, {"comment_id": 2**40}, now=at(1))
    done = await store.get_by_key("c")
    assert done is not None and done.state == "done" and done.result == {"comment_id": 2**40}
    assert done.leased_until is None
    assert await store.due(at(1000), lease=LEASE) == []
    assert not await store.complete(c.id, {"comment_id": 1}, now=at(2))  # completing twice changes nothing
    again = await store.get_by_key("c")
    assert again is not None and again.result == {"comment_id": 2**40}
    with pytest.raises(StoreError, match="unknown outbox item"):
        await store.complete(99_999, now=at(3))


async def test_fail_retries_later_or_gives_up(store: Store) -> None:
    await store.enqueue("d", "dingtalk", {"msg": "x"}, at(0))
    (d,) = await store.due(at(0), lease=LEASE)
    failed = await store.fail(d.id, "errcode 130101: throttled", at(600), now=at(1))
    assert failed.state == "pending" and failed.next_attempt_at == at(600) and failed.leased_until is None
    assert failed.last_error == "errcode 130101: throttled"
    assert await store.due(at(599), lease=LEASE) == []
    (d,) = await store.due(at(600), lease=LEASE)
    assert d.attempts == 2
    gone = await store.fail(d.id, "errcode 310000: signature rejected", None, now=at(601))
    assert gone.state == "failed"
    assert await store.due(at(10_000), lease=LEASE) == []


async def test_replaceable_edits_coalesce_and_never_lose_the_latest(store: Store) -> None:
    key = "tb-1:sticky:edit"
    assert await store.enqueue(key, "comment_edit", {"body": "step 1"}, at(0), replace=True)
    assert await store.enqueue(key, "comment_edit", {"body": "step 2"}, at(1), replace=True)  # coalesced
    assert not await store.enqueue(key, "comment_edit", {"body": "step 2"}, at(2), replace=True)  # same: no-op
    (v2,) = await store.due(at(2), lease=LEASE)
    assert v2.payload == {"body": "step 2"} and v2.version == 2
    # While v2 is being performed, a newer progress arrives: it must not be lost, nor run beside v2.
    assert await store.enqueue(key, "comment_edit", {"body": "step 3"}, at(3), replace=True)
    assert await store.due(at(4), lease=LEASE) == []
    assert not await store.complete(v2.id, {"ok": True}, now=at(5), version=v2.version)  # superseded: pending
    (v3,) = await store.due(at(5), lease=LEASE)
    assert v3.payload == {"body": "step 3"} and v3.version == 3
    assert await store.complete(v3.id, {"ok": True}, now=at(6), version=v3.version)
    # After it is done, a new wish (the final report) makes it pending again.
    assert await store.enqueue(key, "comment_edit", {"body": "final"}, at(7), replace=True)
    (v4,) = await store.due(at(7), lease=LEASE)
    assert v4.payload == {"body": "final"} and v4.attempts == 1


async def test_superseded_failure_is_not_given_up(store: Store) -> None:
    await store.enqueue("e", "comment_edit", {"body": "v1"}, at(0), replace=True)
    (v1,) = await store.due(at(0), lease=LEASE)
    await store.enqueue("e", "comment_edit", {"body": "v2"}, at(1), replace=True)
    after = await store.fail(v1.id, "422", None, now=at(2), version=v1.version)
    assert after.state == "pending" and after.payload == {"body": "v2"}
    (v2,) = await store.due(at(2), lease=LEASE)
    assert v2.version == 2


async def test_concurrent_workers_take_disjoint_items(store: Store, another: Callable[[], Awaitable[Store]]) -> None:
    for i in range(40):
        await store.enqueue(f"k{i:02}", "reaction", {"i": i}, at(i))
    workers = [store, await another(), await another()]

    async def work(s: Store) -> list[str]:
        keys: list[str] = []
        while items := await s.due(at(100), 3, lease=LEASE):
            for it in items:
                keys.append(it.key)
                await s.complete(it.id, {"done_by": id(s)}, now=at(101), version=it.version)
        return keys

    done = await asyncio.gather(*(work(w) for w in workers))
    assert sorted(k for ks in done for k in ks) == [f"k{i:02}" for i in range(40)]


async def test_bad_outbox_input(store: Store) -> None:
    with pytest.raises(StoreError, match="payload: not JSON-serializable"):
        await store.enqueue("x", "slack", {"when": at(0)}, at(0))
    with pytest.raises(StoreError, match="outbox kind: must be a non-empty"):
        await store.enqueue("x", "", {}, at(0))
    with pytest.raises(StoreError, match="payload must be a JSON object"):
        await store.enqueue("x", "slack", None, at(0))  # type: ignore[arg-type]
    assert await store.get_by_key("x") is None


async def test_prune_removes_only_old_done_items(store: Store) -> None:
    await store.enqueue("old", "slack", {}, at(0))
    await store.enqueue("pending", "slack", {}, at(0), not_before=at(10_000))
    (old,) = await store.due(at(1), lease=LEASE)
    await store.complete(old.id, now=at(2))
    assert await store.prune_outbox(before=at(3)) == 1
    assert await store.get_by_key("old") is None and await store.get_by_key("pending") is not None


async def test_decision_is_all_or_nothing(store: Store) -> None:
    """Mark the delivery done, create the run, queue its dispatch and first comment: one commit or none."""
    await store.record_deliveries([delivery("g1")])
    (d,) = await store.claim_pending(1, now=at(1))

    async def decide(fail: bool) -> None:
        async with store.transaction() as tx:
            run, _ = await tx.create_run(new_run("tb-000000000001", trigger_key="g1"), now=at(2))
            await tx.enqueue(f"{run.run_id}:dispatch", "dispatch", {"run_id": run.run_id}, at(2), run_id=run.run_id)
            await tx.enqueue(f"{run.run_id}:ack", "comment_create", {"body": "queued"}, at(2), run_id=run.run_id)
            await tx.mark_delivery(d.id, "done", now=at(2))
            if fail:
                raise ConnectionResetError("crash between deciding and committing")

    with pytest.raises(ConnectionResetError):
        await decide(fail=True)
    assert await store.get_run("tb-000000000001") is None and await store.outbox_for_run("tb-000000000001") == []
    assert [x.state for x in await store.unfinished_deliveries()] == ["processing"]
    await decide(fail=False)
    assert [i.key for i in await store.outbox_for_run("tb-000000000001")] == ["tb-000000000001:dispatch",
                                                                             "tb-000000000001:ack"]
    assert await store.unfinished_deliveries() == []


async def test_remembered_messages_first_writer_wins(store: Store) -> None:
    m = await store.remember_message("tb-1", "sticky", "1234567890123", now=at(0), extra={"html_url": "u"})
    assert (m.channel, m.message_id, m.extra) == ("github", "1234567890123", {"html_url": "u"})
    # A second performer created a duplicate comment; it learns the winner's id.
    loser = await store.remember_message("tb-1", "sticky", "999", now=at(1))
    assert loser.message_id == "1234567890123"
    slack = await store.remember_message("tb-1", "slack-thread", "C1:1700000000.000100", channel="slack", now=at(2))
    assert slack.channel == "slack"
    moved = await store.remember_message("tb-1", "sticky", "555", now=at(3), replace=True)
    assert moved.message_id == "555" and moved.created_at == at(0) and moved.updated_at == at(3)
    got = await store.message_for("tb-1", "sticky")
    assert got == moved
