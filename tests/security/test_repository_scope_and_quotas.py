"""Findings 4 and 5 (issue 11): nothing of one repository shows in another's answers, and the daily GPU quota is
the repository's, counting runs in flight by their planned limit and runs ended by a workflow event."""

from __future__ import annotations

import secrets
from typing import Any

from bot.store import NewRun
from commands.results import BenchmarkResult, Results, SubsetScore
from tests.bot.service.conftest import REPO

PRIVATE = "acme/secret-model"


async def _private_result(bot: Any, repo: str = PRIVATE, model: str = "qwen-7b", correct: int = 9) -> str:
    """A finished training run of a private repository, with a CMMLU score, in the same store."""
    store, now = bot.service.store, bot.service.now()
    rid = "tb-" + secrets.token_hex(6)
    await store.create_run(NewRun(run_id=rid, repo=repo, actor="acme-dev", command=f"/train {model}",
                                  kind="train+eval", run_token="t", number=9, head_sha="9" * 40, model=model),
                           now=now)
    await store.advance_run(rid, "succeeded", now=now)
    bench = BenchmarkResult("cmmlu", {"arts": SubsetScore(10, correct)}, {f"arts/{i}": i < correct for i in range(10)})
    await store.save_results(rid, Results(rid, "succeeded", {"cmmlu": bench}), {"cmmlu": f"key-{rid}"}, repo,
                             "9" * 40, None, now=now)
    return rid


async def test_the_leaderboard_of_one_repository_shows_nothing_of_another(memory_bot: Any) -> None:
    bot = await memory_bot()
    private = await _private_result(bot)
    own = await _private_result(bot, repo=REPO, model="tiny", correct=3)  # this repository's own result
    await bot.comment("/leaderboard cmmlu")
    await bot.settle()
    reply = bot.bot_comments()[-1]
    assert own in reply and "30.0" in reply  # the leaderboard answered, with this repository's entry
    assert private not in reply and "qwen-7b" not in reply and "90.0" not in reply


async def test_an_adapter_of_another_repository_cannot_be_evaluated(memory_bot: Any) -> None:
    bot = await memory_bot()
    private = await _private_result(bot)
    await bot.comment(f"/eval cmmlu model=tiny adapter={private}")
    await bot.settle()
    assert bot.dispatches() == []
    assert f"this repository has no run `{private}`" in bot.bot_comments()[-1]


POLICY = "version: 1\nquotas:\n  gpu_hours_per_day: 10\n  max_run_hours: 6\n  runs_per_user_per_day: 50\n"


async def test_the_daily_gpu_quota_is_the_repositorys_and_counts_runs_in_flight(memory_bot: Any) -> None:
    bot = await memory_bot(policy=POLICY)
    for login in ("alice", "bob", "carol"):
        bot.repo.set_permission(login, "write")
    await bot.comment("/train tiny max_steps=20", login="alice", association="COLLABORATOR")
    await bot.comment("/train tiny max_steps=20", login="bob", association="COLLABORATOR")
    await bot.settle()
    assert len(bot.dispatches()) == 2  # 0 h, then 6 h planned: both fit under 10 h
    await bot.comment("/train tiny max_steps=20", login="carol", association="COLLABORATOR")
    await bot.settle()
    assert len(bot.dispatches()) == 2  # 12 h planned by two people: the repository is full for today
    reply = bot.bot_comments()[-1]
    assert "this repository has used 12.0 of its 10 GPU hours today" in reply


async def test_a_run_ended_by_a_workflow_event_is_charged_its_gpu_time(memory_bot: Any) -> None:
    bot = await memory_bot()
    run = await bot.start_run()
    rid = run.run_id
    await bot.post_event(rid, run.run_token, 0, "accepted", kind="train", model="tiny")  # the agent started
    await bot.settle()
    real = bot.service.clock
    bot.service.clock = lambda: real() + 1800  # the runner died 30 minutes in
    bot.github.set_run_status(run.workflow_run_id, "completed", "failure")
    await bot.workflow_run(run.workflow_run_id, "completed")
    await bot.settle()
    ended = await bot.service.store.get_run(rid)
    assert ended.state == "failed" and ended.gpu_seconds is not None and 1790 <= ended.gpu_seconds <= 1900
