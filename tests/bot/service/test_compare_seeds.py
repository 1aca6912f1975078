"""`seeds=N` on both sides of `/compare`, one baseline run for every PR asking for it, and a failed baseline that
tells the waiting PRs why. The agent's side is played with signed events (tests/bot/service/test_compare_recipe.py's
repository: main with data A, PRs with data B)."""

from __future__ import annotations

from tests.bot.service.conftest import job_of
from tests.bot.service.test_compare_flow import outcomes, run_to_end
from tests.bot.service.test_compare_recipe import POLICY, TRAIN, setup_repo, train_and_finish

SEEDS_POLICY = POLICY + "seeds:\n  default: 1\n  max: 3\n"


async def finish_new(bot, before: int, scores: dict[int, float]) -> list:
    """Run every job dispatched after `before` to the end; a job of seed s scores scores[s] (base-model evals 0.25)."""
    jobs = [job_of(d) for d in bot.dispatches()[before:]]
    for job in jobs:
        p = scores.get(job.hyper.seed, 0.25) if job.trains else 0.25
        await run_to_end(bot, job.run_id, outcomes(job.hyper.seed * 7 + len(job.sha), p))
    return jobs


async def test_seeds_2_trains_both_sides_twice_and_judges_across_seeds(memory_bot) -> None:
    bot = await memory_bot(policy=SEEDS_POLICY)
    shas = setup_repo(bot)
    await bot.comment(TRAIN + " seeds=2")
    await bot.settle()
    heads = [job_of(d) for d in bot.dispatches()]
    assert [j.hyper.seed for j in heads] == [42, 43] and all(j.sha == shas["pr1"] for j in heads)
    assert heads[0].run_id != heads[1].run_id and heads[0].datasets == heads[1].datasets
    await finish_new(bot, 0, {42: 0.9, 43: 0.85})
    n = len(bot.dispatches())

    await bot.comment("/compare main seeds=2")
    await bot.settle()
    bases = [job_of(d) for d in bot.dispatches()[n:]]
    # The baseline side: the same recipe at main's commit, once per seed.
    assert sorted(j.hyper.seed for j in bases) == [42, 43]
    assert all(j.sha == shas["main"] and j.kind == "train+eval" for j in bases)
    assert not any("tunebot:compare:" in c and "-vs-main" in c and "CMMLU" in c for c in bot.bot_comments())
    await run_to_end(bot, bases[0].run_id, outcomes(3, 0.3))
    # One seed of the baseline landed: still waiting for the other, no report yet.
    assert not any("tunebot:compare:" in c and "-vs-main" in c and "CMMLU" in c for c in bot.bot_comments())
    await run_to_end(bot, bases[1].run_id, outcomes(4, 0.35))
    [report] = [c for c in bot.bot_comments() if f"tunebot:compare:{heads[0].run_id}-vs-main" in c]
    assert "2 seeds per side (42, 43)" in report and "Welch" in report
    assert "(mean" not in report and " ± " in report  # per-seed scores and mean ± sd
    assert "Single seed" not in report
    assert shas["main"][:7] in report and shas["pr1"][:7] in report


async def test_compare_seeds_trains_the_missing_head_seed_too_and_refuses_above_the_max(memory_bot) -> None:
    bot = await memory_bot(policy=SEEDS_POLICY)
    setup_repo(bot)
    await train_and_finish(bot, 1, 0.9, 1)
    n = len(bot.dispatches())
    await bot.comment("/compare main seeds=4")
    await bot.settle()
    assert len(bot.dispatches()) == n
    assert any("`seeds=4` is more than this repository allows (3" in c for c in bot.bot_comments())

    await bot.comment("/compare main seeds=2")
    await bot.settle()
    new = [job_of(d) for d in bot.dispatches()[n:]]
    head_seed = [j for j in new if j.sha == bot.repo.pulls[1].head_sha]
    base = [j for j in new if j.sha != bot.repo.pulls[1].head_sha]
    assert [j.hyper.seed for j in head_seed] == [43]  # seed 42 was trained by /train; 43 is added
    assert sorted(j.hyper.seed for j in base) == [42, 43]
    for job in new:
        await run_to_end(bot, job.run_id, outcomes(job.hyper.seed, 0.9 if job in head_seed else 0.3))
    assert any("2 seeds per side (42, 43)" in c for c in bot.bot_comments())


async def test_two_prs_asking_for_the_same_baseline_at_once_share_one_run(memory_bot) -> None:
    bot = await memory_bot(policy=POLICY)
    setup_repo(bot)
    head1 = await train_and_finish(bot, 1, 0.9, 1)
    head2 = await train_and_finish(bot, 2, 0.8, 2)
    n = len(bot.dispatches())
    await bot.comment("/compare main", number=1)
    await bot.settle()
    await bot.comment("/compare main", number=2)
    await bot.settle()
    # PR 1 and PR 2 train the same data (B) at the same main commit: one baseline run, dispatched once.
    assert len(bot.dispatches()) == n + 1
    base = job_of(bot.dispatches()[-1])
    await run_to_end(bot, base.run_id, outcomes(5, 0.3))
    assert any(f"tunebot:compare:{head1}-vs-main" in c for c in bot.bot_comments(1))
    assert any(f"tunebot:compare:{head2}-vs-main" in c for c in bot.bot_comments(2))


async def test_a_failed_baseline_tells_the_waiting_pr_why(memory_bot) -> None:
    bot = await memory_bot(policy=POLICY)
    setup_repo(bot)
    head = await train_and_finish(bot, 1, 0.9, 1)
    n = len(bot.dispatches())
    await bot.comment("/compare main")
    await bot.settle()
    base = job_of(bot.dispatches()[n])
    run = await bot.service.store.get_run(base.run_id)
    await bot.post_event(base.run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(base.run_id, run.run_token, 1, "finished", status="failed",
                         reason="CUDA out of memory while training")
    await bot.settle()
    texts = bot.bot_comments(1)
    notice = [c for c in texts if "will not come" in c]
    assert notice, texts[-3:]
    assert base.run_id in notice[0] and head in notice[0] and "CUDA out of memory" in notice[0]
    assert f"/retry {base.run_id}" in notice[0]
    # Asking again starts a new attempt (the failed one is not waited on forever).
    m = len(bot.dispatches())
    await bot.comment("/compare main")
    await bot.settle()
    assert len(bot.dispatches()) == m + 1
