"""Runs: idempotent creation, forward-only state (a finished run stays finished), facts, look-ups and usage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import text

from bot.store import ACTIVE_RUN_STATES, RUN_STATES, TERMINAL_RUN_STATES, DuplicateRun, Store, StoreError, UnknownRun
from commands.jobspec import job_from_json
from tests.paths import REPO

from .helpers import at, new_run


async def test_create_round_trips_every_field_including_a_job_spec(store: Store) -> None:
    job = job_from_json((REPO / "configs" / "examples" / "tiny-train-eval.json").read_text())
    new = replace(new_run("tb-0123456789ab", trigger_key="github:app/1/delivery-1", name_token="tbn-0123456789ab"),
                  job_spec=job)  # a JobSpec is accepted as well as its dict
    run, created = await store.create_run(new, now=at(0))
    assert created
    got = await store.get_run("tb-0123456789ab")
    assert got == run
    assert got.state == "queued" and got.last_seq == -1 and got.next_seq == 0 and not got.finished
    assert got.run_token == "tok-tb-0123456789ab" and "tok-" not in repr(got)  # the HMAC key stays out of logs
    assert got.created_at == got.updated_at == at(0) and got.finished_at is None
    assert job_from_json(json.dumps(got.job_spec)) == job  # the spec survives the database unchanged
    assert await store.get_run("tb-missing") is None


async def test_the_same_trigger_twice_makes_one_run(store: Store) -> None:
    first, created = await store.create_run(new_run("tb-000000000001", trigger_key="comment-55"), now=at(0))
    assert created
    # The delivery is processed again after a crash; the brain drew a fresh run id, but the trigger is the same.
    again, created = await store.create_run(new_run("tb-000000000002", trigger_key="comment-55"), now=at(5))
    assert not created and again == first
    assert await store.get_run("tb-000000000002") is None
    assert await store.find_run_by_trigger("comment-55") == first


async def test_taken_run_id_or_name_token_is_an_error(store: Store) -> None:
    await store.create_run(new_run("tb-000000000001", trigger_key="t1", name_token="n1"), now=at(0))
    with pytest.raises(DuplicateRun, match="tb-000000000001"):
        await store.create_run(new_run("tb-000000000001", trigger_key="t2"), now=at(1))
    with pytest.raises(DuplicateRun, match="tb-000000000001"):
        await store.create_run(new_run("tb-000000000009", trigger_key="t3", name_token="n1"), now=at(1))


async def test_bad_run_input_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="use only letters"):
        await store.create_run(new_run("tb 1; drop"), now=at(0))
    with pytest.raises(UnknownRun, match="tb-nope"):
        await store.create_run(new_run("tb-000000000001", retry_of="tb-nope"), now=at(0))
    bad_spec = type(new_run("x"))(run_id="tb-000000000002", repo="o/r", actor="a", command="/x", kind="eval",
                                   run_token="t", job_spec={"when": object()})
    with pytest.raises(StoreError, match="job_spec: not JSON-serializable"):
        await store.create_run(bad_spec, now=at(0))
    assert await store.runs_for_pr("octo/demo", 7) == []


async def test_state_only_moves_forward_and_stamps_times(store: Store) -> None:
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    run, changed = await store.advance_run("tb-000000000001", "dispatched", now=at(1))
    assert changed and run.state == "dispatched" and run.dispatched_at == at(1)
    run, changed = await store.advance_run("tb-000000000001", "running", now=at(2), phase="download")
    assert changed and run.started_at == at(2) and run.phase == "download"
    # A late "dispatched" (the dispatch answer came after the agent's first event) does not demote the run.
    run, changed = await store.advance_run("tb-000000000001", "dispatched", now=at(3))
    assert not changed and run.state == "running" and run.updated_at == at(2)
    run, changed = await store.advance_run("tb-000000000001", "running", now=at(4))
    assert not changed
    run, changed = await store.advance_run("tb-000000000001", "succeeded", now=at(5), reason="all good")
    assert changed and run.finished and run.finished_at == at(5) and run.reason == "all good"


async def test_events_may_skip_dispatched(store: Store) -> None:
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    run, changed = await store.advance_run("tb-000000000001", "running", now=at(1))
    assert changed and run.dispatched_at is None and run.started_at == at(1)


@pytest.mark.parametrize("final", TERMINAL_RUN_STATES)
async def test_a_finished_run_is_never_resurrected(store: Store, final: str) -> None:
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    await store.advance_run("tb-000000000001", final, now=at(1), reason="first")  # type: ignore[arg-type]
    for state in RUN_STATES:
        run, changed = await store.advance_run("tb-000000000001", state, now=at(2), reason="late")  # type: ignore[arg-type]
        assert not changed
        assert (run.state, run.reason, run.finished_at, run.updated_at) == (final, "first", at(1), at(1))
    # Facts may still arrive (e.g. the comment id of the final report), the state stays.
    run2 = await store.update_run("tb-000000000001", now=at(3), comment_id=2**40)
    assert run2 is not None and run2.state == final and run2.comment_id == 2**40
    # A state-sensitive update (the phase of an active run) is refused by its compare-and-set.
    assert await store.update_run("tb-000000000001", now=at(4), expect_states=ACTIVE_RUN_STATES,
                                  phase="train") is None


async def test_the_database_refuses_a_half_finished_row(store: Store) -> None:
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    with pytest.raises(Exception, match="ck_runs_finished"):
        async with store._engines.writer.begin() as conn:
            await conn.execute(text("UPDATE runs SET state = 'succeeded' WHERE run_id = 'tb-000000000001'"))


async def test_racing_final_states_one_wins(store: Store, another: Callable[[], Awaitable[Store]]) -> None:
    for i in range(5):
        await store.create_run(new_run(f"tb-00000000000{i}"), now=at(0))
    other = await another()
    for i in range(5):
        rid = f"tb-00000000000{i}"
        (a, ca), (b, cb) = await asyncio.gather(store.advance_run(rid, "succeeded", now=at(1)),
                                                other.advance_run(rid, "cancelled", now=at(2)))
        assert ca != cb  # exactly one caller moved it, and both were told the same outcome
        assert a.state == b.state
        final = await store.get_run(rid)
        assert final is not None and final.state == ("succeeded" if ca else "cancelled")


async def test_update_sets_facts_unset_leaves_none_clears(store: Store) -> None:
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    run = await store.update_run("tb-000000000001", now=at(1), workflow_run_id=9_876_543_210,
                                 workflow_url="https://github.com/o/r/actions/runs/9876543210", check_run_id=2**33,
                                 progress={"step": 3, "total": 30, "loss": 1.25}, gpu_seconds=12.5)
    assert run is not None
    assert (run.workflow_run_id, run.check_run_id, run.progress, run.gpu_seconds) == (
        9_876_543_210, 2**33, {"step": 3, "total": 30, "loss": 1.25}, 12.5)
    run = await store.update_run("tb-000000000001", now=at(2), progress=None)
    assert run is not None and run.progress is None and run.workflow_run_id == 9_876_543_210
    assert run.updated_at == at(2)
    assert await store.update_run("tb-000000000001", now=at(3), expect_states=["dispatched"], phase="x") is None
    with pytest.raises(UnknownRun):
        await store.update_run("tb-missing", now=at(3), phase="train")
    with pytest.raises(StoreError, match="unknown state"):
        await store.update_run("tb-000000000001", now=at(3), expect_states=["paused"])  # type: ignore[list-item]


async def test_lookups_for_the_sweep_and_the_pr(store: Store) -> None:
    await store.create_run(new_run("tb-000000000001", name_token="tbn-1"), now=at(0))
    await store.create_run(new_run("tb-000000000002", number=8), now=at(1))
    await store.create_run(new_run("tb-000000000003", retry_of="tb-000000000001"), now=at(2))
    await store.create_run(new_run("tb-000000000004", repo="other/repo"), now=at(3))
    await store.update_run("tb-000000000002", now=at(10), workflow_run_id=555)
    await store.advance_run("tb-000000000003", "failed", now=at(11))

    assert [r.run_id for r in await store.runs_for_pr("octo/demo", 7)] == ["tb-000000000003", "tb-000000000001"]
    assert [r.run_id for r in await store.runs_for_pr("octo/demo", 7, limit=1)] == ["tb-000000000003"]
    active = await store.active_runs()
    assert [r.run_id for r in active] == ["tb-000000000001", "tb-000000000004", "tb-000000000002"]
    assert [r.run_id for r in await store.active_runs(updated_before=at(5))] == ["tb-000000000001",
                                                                                  "tb-000000000004"]
    found = await store.find_run_by_workflow_run(555)
    assert found is not None and found.run_id == "tb-000000000002"
    assert await store.find_run_by_workflow_run(556) is None
    by_name = await store.find_run_by_name_token("tbn-1")
    assert by_name is not None and by_name.run_id == "tb-000000000001"
    retry = await store.get_run("tb-000000000003")
    assert retry is not None and retry.retry_of == "tb-000000000001"


async def test_usage_is_derived_per_user_repo_and_utc_day(store: Store) -> None:
    day = date(2026, 3, 1)
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    await store.create_run(new_run("tb-000000000002"), now=at(3600))
    await store.create_run(new_run("tb-000000000003", actor="bob"), now=at(0))
    await store.create_run(new_run("tb-000000000004", repo="other/repo"), now=at(0))
    await store.create_run(new_run("tb-000000000005"), now=at(12 * 3600))  # 00:00 UTC of the next day
    await store.update_run("tb-000000000001", now=at(100), gpu_seconds=90.5)
    await store.update_run("tb-000000000002", now=at(100), gpu_seconds=30.0)
    # Recording the same GPU time again (a retried write) does not charge twice: it is set, not added.
    await store.update_run("tb-000000000002", now=at(101), gpu_seconds=30.0)
    usage = await store.usage("octo/demo", "alice", day)
    assert (usage.runs, usage.gpu_seconds) == (2, 120.5)
    assert (await store.usage("octo/demo", "alice", date(2026, 3, 2))).runs == 1
    assert (await store.usage("octo/demo", "carol", day)).runs == 0
    assert (await store.usage("octo/demo", "carol", day)).gpu_seconds == 0.0
    window = await store.usage_between("octo/demo", "alice", at(-10), at(10))
    assert window.runs == 1


async def test_a_runs_baselines_are_found_by_an_indexed_query(store: Store) -> None:
    await store.create_run(new_run("tb-000000000001"), now=at(0))
    for i, (repo, origin) in enumerate([("octo/demo", "tb-000000000001"), ("octo/demo", "tb-000000000001"),
                                        ("octo/demo", None), ("other/repo", "tb-000000000001")], start=2):
        await store.create_run(replace(new_run(f"tb-00000000000{i}", repo=repo), backfill_for=origin), now=at(i))
    for i in range(6, 9):  # newer runs of the repository that are nobody's baseline
        await store.create_run(new_run(f"tb-00000000000{i}"), now=at(i))

    found = await store.backfills_for("octo/demo", "tb-000000000001")
    assert [r.run_id for r in found] == ["tb-000000000003", "tb-000000000002"]  # newest first, this repo only
    assert [r.run_id for r in await store.backfills_for("octo/demo", "tb-000000000001", limit=1)] == \
        ["tb-000000000003"]
    assert await store.backfills_for("octo/demo", "tb-000000000002") == []
    assert [r.run_id for r in await store.backfills_for("other/repo", "tb-000000000001")] == ["tb-000000000005"]
    async with store._engines.writer.connect() as conn:
        if conn.dialect.name == "sqlite":  # the look-up is an index search, not a scan of the repository's runs
            plan = (await conn.execute(text("EXPLAIN QUERY PLAN SELECT run_id FROM runs "
                                            "WHERE repo = 'octo/demo' AND backfill_for = 'tb-000000000001'"))).all()
            assert any("ix_runs_backfill_for" in str(row) for row in plan), plan
        else:
            names = (await conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'runs' "
                                              "AND schemaname = current_schema()"))).scalars()
            assert "ix_runs_backfill_for" in set(names)
