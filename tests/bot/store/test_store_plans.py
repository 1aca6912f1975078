"""Plans waiting for /approve: kept per PR, deduplicated by hash, approved once."""

from __future__ import annotations

from bot.store import Store

from .helpers import at

SHA = "1" * 40


async def test_plan_waits_is_deduplicated_and_is_approved_once(store: Store) -> None:
    jobs = [{"job": {"run_id": "r-1", "kind": "train"}, "result_key": "k"}]
    plan = await store.add_plan("octo/demo", 7, SHA, "a" * 64, "alice", "/train tiny", jobs, "too big", now=at(0))
    again = await store.add_plan("octo/demo", 7, SHA, "a" * 64, "alice", "/train tiny", jobs, "too big", now=at(1))
    assert again.id == plan.id and plan.jobs == tuple(jobs) and plan.state == "waiting"
    other = await store.add_plan("octo/demo", 7, SHA, "b" * 64, "bob", "/train tiny steps=9", jobs, "x", now=at(2))
    assert [p.id for p in await store.waiting_plans("octo/demo", 7)] == [other.id, plan.id]
    assert await store.waiting_plans("octo/demo", 8) == []
    assert await store.decide_plan(plan.id, "approved", "maint", now=at(3))
    assert not await store.decide_plan(plan.id, "approved", "maint2", now=at(4))  # the second approval starts nothing
    assert [p.id for p in await store.waiting_plans("octo/demo", 7)] == [other.id]
