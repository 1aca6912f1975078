"""Finding 1 (issue 11): a workflow run binds to a tunebot run only if it is the bot's own dispatch. Each test plays
the attacker: a fork author who controls a PR title, a workflow file on their branch, or another repository."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.bot.service.conftest import REPO
from tests.fakes.github import FakeRun

_ids = itertools.count(900_001)


def _foreign_run(bot: Any, *, title: str, event: str = "pull_request", workflow: str = "tunebot-run.yml",
                 branch: str = "main", repo: str = REPO, attempt: int = 1) -> FakeRun:
    """A workflow run the bot did not dispatch, as GitHub would report it."""
    now = bot.github.clock()
    run = FakeRun(id=next(_ids), repo=repo, workflow_file=workflow, name="CI", display_title=title,
                  head_branch=branch, head_sha="e" * 40, inputs={}, created_at=now, updated_at=now,
                  status="completed", conclusion="failure", event=event, run_attempt=attempt)
    bot.github.runs[run.id] = run
    return run


async def _unbound_active_run(memory_bot: Any) -> tuple[Any, str]:
    """A dispatched run whose workflow run is not known yet (GHES answers a dispatch with 204, no run id)."""
    bot = await memory_bot()
    bot.github.dispatch_mode = "no_content"
    bot.github.run_name_template = "not listed yet {run_id}"  # our own dispatch is not visible yet either
    run = await bot.start_run()
    rid = run.run_id
    bot.github.runs.clear()
    assert run.workflow_run_id is None and not run.finished
    return bot, rid


@pytest.mark.parametrize("attack", [
    pytest.param({"title": "Fix typo in {rid} docs"}, id="pr-title-holding-the-run-id"),
    pytest.param({"title": "tunebot {rid}"}, id="pr-workflow-named-like-ours"),
    pytest.param({"title": "tunebot {rid}", "event": "workflow_dispatch", "workflow": "evil.yml"},
                 id="run-name-of-another-workflow-file"),
    pytest.param({"title": "tunebot {rid}", "event": "workflow_dispatch", "branch": "attacker-branch"},
                 id="our-workflow-file-from-another-branch"),
    pytest.param({"title": "tunebot {rid}", "event": "workflow_dispatch", "attempt": 2}, id="a-re-run"),
])
async def test_a_foreign_workflow_run_cannot_end_an_active_run(memory_bot: Any, attack: dict[str, Any]) -> None:
    bot, rid = await _unbound_active_run(memory_bot)
    evil = _foreign_run(bot, **{**attack, "title": attack["title"].format(rid=rid)})
    assert (await bot.workflow_run(evil.id, "completed")).status == 202
    await bot.settle()
    run = await bot.service.store.get_run(rid)
    assert run.workflow_run_id is None and not run.finished, run.reason


async def test_a_workflow_run_of_another_repository_cannot_bind(memory_bot: Any) -> None:
    bot, rid = await _unbound_active_run(memory_bot)
    bot.github.add_repo("eve/Hello-World")
    evil = _foreign_run(bot, title=f"tunebot {rid}", event="workflow_dispatch", repo="eve/Hello-World")
    await bot.workflow_run(evil.id, "completed")
    await bot.settle()
    run = await bot.service.store.get_run(rid)
    assert run.workflow_run_id is None and not run.finished


async def test_our_own_dispatch_still_binds_by_its_exact_name(memory_bot: Any) -> None:
    """The defence must not break what it guards: the bot's dispatch (204, found by its run-name) binds."""
    bot, rid = await _unbound_active_run(memory_bot)
    ours = _foreign_run(bot, title=f"tunebot {rid}", event="workflow_dispatch")
    await bot.workflow_run(ours.id, "completed")
    await bot.settle()
    run = await bot.service.store.get_run(rid)
    assert run.workflow_run_id == ours.id and run.state == "failed"


async def test_a_finished_training_run_cannot_be_repointed_at_an_attackers_artifact(memory_bot: Any) -> None:
    """`/eval adapter=<run>` downloads the artifact of the training run's workflow run: that binding must hold."""
    bot = await memory_bot()
    run = await bot.start_run()
    rid = run.run_id
    await bot.post_event(rid, run.run_token, 0, "finished", status="succeeded")
    await bot.settle()
    genuine = (await bot.service.store.get_run(rid)).workflow_run_id
    assert genuine is not None
    for attack in ({"title": f"tunebot {rid}", "event": "workflow_dispatch"}, {"title": f"Refactor {rid} a bit"}):
        evil = _foreign_run(bot, **attack)
        await bot.workflow_run(evil.id, "completed")
        await bot.settle()
        after = await bot.service.store.get_run(rid)
        assert (after.workflow_run_id, after.state) == (genuine, "succeeded")


async def test_a_workflow_job_event_of_another_repository_is_ignored(memory_bot: Any) -> None:
    bot = await memory_bot()
    run = await bot.start_run()
    bot.github.add_repo("eve/Hello-World")
    bot.github.runs[run.workflow_run_id].repo = "eve/Hello-World"  # the same run id, claimed by another repository
    await bot.workflow_job(run.workflow_run_id, "in_progress")
    await bot.settle()
    assert (await bot.service.store.get_run(run.run_id)).state == "dispatched"
