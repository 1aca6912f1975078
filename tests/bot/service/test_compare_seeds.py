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


async def test_compare_seeds_is_kept_when_compare_must_first_evaluate_the_adapter(make_bot) -> None:
    bot = await make_bot(policy=SEEDS_POLICY)
    shas = setup_repo(bot)
    head = await train_and_finish(bot, 1, 0.9, 1)
    n = len(bot.dispatches())
    # limit=30 is not how the adapter was evaluated: /compare starts an eval run of it first.
    await bot.comment("/compare main limit=30 seeds=2")
    await bot.settle()
    [ev] = [job_of(d) for d in bot.dispatches()[n:]]
    assert ev.kind == "eval" and ev.adapter is not None and ev.adapter.run_id == head
    assert (await bot.service.store.get_run(ev.run_id)).compare_seeds == 2
    await run_to_end(bot, ev.run_id, outcomes(11, 0.9))
    # When it lands, N=2 still holds: the head's seed 43 is trained and both baseline seeds at main, all with limit=30.
    new = [job_of(d) for d in bot.dispatches()[n + 1:]]
    head_seed = [j for j in new if j.sha == shas["pr1"]]
    base = [j for j in new if j.sha == shas["main"]]
    assert [j.hyper.seed for j in head_seed] == [43] and sorted(j.hyper.seed for j in base) == [42, 43]
    assert all(b.limit == 30 for j in new for b in j.benchmarks)
    for job in new:
        await run_to_end(bot, job.run_id, outcomes(job.hyper.seed, 0.9 if job in head_seed else 0.3))
    [report] = [c for c in bot.bot_comments() if "2 seeds per side (42, 43)" in c]
    assert "Welch" in report and shas["main"][:7] in report


async def test_compare_seeds_evaluates_a_seed_trained_earlier_the_way_the_comparison_asks(make_bot) -> None:
    bot = await make_bot(policy=SEEDS_POLICY)
    shas = setup_repo(bot)
    await bot.comment(TRAIN + " seeds=2")
    await bot.settle()
    trained = [job_of(d) for d in bot.dispatches()]
    await finish_new(bot, 0, {42: 0.9, 43: 0.85})
    n = len(bot.dispatches())
    await bot.comment("/compare main limit=30 seeds=2")
    await bot.settle()
    evals = [job_of(d) for d in bot.dispatches()[n:] if job_of(d).kind == "eval"]
    # One eval run asked for by the command (the newest adapter) and none yet for the other: it starts when the
    # first lands (the comparison then knows what it lacks).
    assert len(evals) == 1
    await run_to_end(bot, evals[0].run_id, outcomes(12, 0.9))
    more = [job_of(d) for d in bot.dispatches()[n + 1:]]
    seed_evals = [j for j in more if j.kind == "eval"]
    assert len(seed_evals) == 1 and seed_evals[0].adapter is not None
    assert {seed_evals[0].adapter.run_id, evals[0].adapter.run_id} == {j.run_id for j in trained}
    assert sorted(j.hyper.seed for j in more if j.sha == shas["main"]) == [42, 43]
    for job in more:
        await run_to_end(bot, job.run_id, outcomes(job.hyper.seed + 5, 0.3 if job.sha == shas["main"] else 0.9))
    assert any("2 seeds per side (42, 43)" in c for c in bot.bot_comments())


async def test_a_failed_head_seed_tells_the_pr_why_instead_of_waiting_silently(make_bot) -> None:
    bot = await make_bot(policy=SEEDS_POLICY)
    setup_repo(bot)
    await train_and_finish(bot, 1, 0.9, 1)
    n = len(bot.dispatches())
    await bot.comment("/compare main seeds=2")
    await bot.settle()
    new = [job_of(d) for d in bot.dispatches()[n:]]
    [seed43] = [j for j in new if j.sha == bot.repo.pulls[1].head_sha]
    run = await bot.service.store.get_run(seed43.run_id)
    await bot.post_event(seed43.run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(seed43.run_id, run.run_token, 1, "finished", status="failed", reason="loss became NaN")
    await bot.settle()
    [notice] = [c for c in bot.bot_comments(1) if "will not come" in c]
    assert seed43.run_id in notice and "seed 43" in notice and "loss became NaN" in notice
    assert f"/retry {seed43.run_id}" in notice and "main@" in notice
    # The retried seed keeps the comparison's intent: when it and the baselines land, the report comes.
    await bot.comment(f"/retry {seed43.run_id}")
    await bot.settle()
    retried = job_of(bot.dispatches()[-1])
    assert retried.hyper.seed == 43 and (await bot.service.store.get_run(retried.run_id)).compare_seeds == 2
    for job in [j for j in new if j is not seed43] + [retried]:
        await run_to_end(bot, job.run_id, outcomes(job.hyper.seed, 0.3 if job.sha != seed43.sha else 0.9))
    assert any("2 seeds per side (42, 43)" in c for c in bot.bot_comments(1))


async def test_train_seeds_2_gets_one_base_model_report_for_the_set(make_bot) -> None:
    bot = await make_bot(policy=SEEDS_POLICY)
    setup_repo(bot)
    await bot.comment(TRAIN + " seeds=2")
    await bot.settle()
    heads = [job_of(d) for d in bot.dispatches()]
    await run_to_end(bot, heads[0].run_id, outcomes(42, 0.9))
    await run_to_end(bot, heads[1].run_id, outcomes(43, 0.85))
    # One base-model eval for the set, not one per seed.
    bases = [job_of(d) for d in bot.dispatches()[2:]]
    assert len(bases) == 1 and bases[0].kind == "eval" and bases[0].adapter is None
    assert not any("tunebot:compare:" in c for c in bot.bot_comments())
    await run_to_end(bot, bases[0].run_id, outcomes(99, 0.25))
    reports = [c for c in bot.bot_comments() if "tunebot:compare:" in c]
    assert len(reports) == 1, reports
    assert f"tunebot:compare:{heads[0].run_id}" in reports[0] and heads[1].run_id not in reports[0]
    assert "2 seeds per side (42, 43)" in reports[0] and "base-model" in reports[0]
