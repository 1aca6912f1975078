"""Permanent dispatch failures are said at once (issue 17, item 3): a 404 (no workflow file on the default branch)
or a 403 (the App lacks `actions: write`) fails the run on the spot, its card and a reply say how to fix it, and
the dispatch is never retried; a run that ends calls off its dispatch still waiting for a retry."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.bot.service.conftest import REPO, WORKFLOW, Bot


async def _card_says(bot: Bot, text: str) -> str:
    """The run card once it shows `text` (the final edit may wait for the card's creation and its retry)."""
    for _ in range(200):
        await bot.settle()
        card = next((c for c in bot.bot_comments() if c.startswith("<!-- tunebot:run:")), "")
        if text in card:
            return card
        await asyncio.sleep(0.05)
    raise AssertionError(f"the card never said {text!r}: {card}")


async def _run_of(bot: Bot) -> Any:
    (run,) = await bot.service.store.runs_for_pr(REPO, 1)
    return run


async def test_a_missing_workflow_file_fails_the_run_at_once_and_says_how_to_fix_it(make_bot: Any) -> None:
    bot: Bot = await make_bot()
    bot.repo.workflows.clear()  # nobody committed .github/workflows/tunebot-run.yml to the default branch
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    run = await _run_of(bot)
    assert run.state == "failed" and f"no workflow `{WORKFLOW}` on the default branch `main`" in (run.reason or "")
    assert len(bot.github.requests_to("POST", "*/dispatches")) == 1  # never retried
    item = await bot.service.store.get_by_key(f"dispatch:{run.run_id}")
    assert item is not None and item.state == "failed" and item.attempts == 1
    card = await _card_says(bot, f".github/workflows/{WORKFLOW}")
    assert "failed" in card
    (reply,) = [c for c in bot.bot_comments() if c != card]
    assert reply.startswith(f"@Codertocat ❌ `{run.run_id}` could not start") and "GitHub 404" in reply
    assert f"`/retry {run.run_id}`" in reply


async def test_a_dispatch_forbidden_to_the_app_is_not_retried_and_names_the_permission(make_bot: Any) -> None:
    bot: Bot = await make_bot()
    bot.github.fail_next("POST", "*/dispatches", times=10, status=403)  # "Resource not accessible by integration"
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    run = await _run_of(bot)
    assert run.state == "failed" and "actions: write" in (run.reason or "")
    assert len(bot.github.requests_to("POST", "*/dispatches")) == 1
    assert any("`actions: write`" in c and "GitHub 403" in c and c.startswith("@Codertocat")
               for c in bot.bot_comments())
    assert "failed" in await _card_says(bot, "actions: write")


async def test_a_run_that_ends_calls_off_its_dispatch_waiting_for_a_retry(make_bot: Any) -> None:
    bot: Bot = await make_bot()
    bot.github.fail_next("POST", "*/dispatches", times=3, status=502)  # the port's 3 tries: the outbox retries later
    await bot.comment("/train tiny max_steps=20")
    for _ in range(100):
        run = await _run_of(bot) if await bot.service.store.runs_for_pr(REPO, 1) else None
        item = await bot.service.store.get_by_key(f"dispatch:{run.run_id}") if run else None
        if item is not None and item.last_error:
            break
        await asyncio.sleep(0.05)
    assert item is not None and item.state == "pending" and item.next_attempt_at > bot.service.now()
    await bot.comment(f"/cancel {run.run_id}")
    await bot.settle()
    item = await bot.service.store.get_by_key(f"dispatch:{run.run_id}")
    assert item is not None and item.state == "failed" and "called off" in (item.last_error or "")
    assert (await _run_of(bot)).state == "cancelled"
    # Even when its retry time comes, nothing is offered: no GPU job starts for the cancelled run.
    later = bot.service.now().replace(year=bot.service.now().year + 1)
    assert [i for i in await bot.service.store.due(later, 50) if i.kind == "dispatch"] == []
    assert len(bot.github.runs) == 0
