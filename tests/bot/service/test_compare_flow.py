"""/compare: the PR's stored eval is reused, a missing baseline is backfilled, and the comparison is posted."""

import random

from tests.bot.service.conftest import job_of

POLICY = "version: 1\nbenchmarks:\n  default: [cmmlu]\n"


def outcomes(seed: int, p_right: float, n: int = 60) -> dict:
    rnd = random.Random(seed)
    questions = {f"{s}/{i}": rnd.random() < p_right for s in ("agronomy", "anatomy") for i in range(n // 2)}
    subsets = {s: {"n": n // 2, "correct": sum(v for k, v in questions.items() if k.startswith(s))}
               for s in ("agronomy", "anatomy")}
    correct = sum(questions.values())
    return {"benchmark": "cmmlu", "score": correct / n, "n": n, "correct": correct, "subsets": subsets,
            "questions": questions}


async def run_to_end(bot, run_id: str, result: dict) -> None:
    run = await bot.service.store.get_run(run_id)
    await bot.post_event(run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(run_id, run.run_token, 1, "eval_result", **result)
    await bot.post_event(run_id, run.run_token, 2, "finished", status="succeeded")
    await bot.settle()


async def test_pr_eval_backfills_the_baseline_then_compare_answers_from_the_store(memory_bot) -> None:
    bot = await memory_bot(policy=POLICY)
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    train = job_of(bot.dispatches()[0])
    assert train.kind == "train+eval"
    await run_to_end(bot, train.run_id, outcomes(1, 0.9))
    # The PR's adapter was evaluated and no baseline is stored: the base-model eval is backfilled at once.
    dispatched = [job_of(d) for d in bot.dispatches()]
    assert len(dispatched) == 2
    baseline = dispatched[1]
    assert baseline.kind == "eval" and baseline.adapter is None and baseline.model.name == "tiny"
    assert [b.name for b in baseline.benchmarks] == ["cmmlu"]
    assert [b.subsets for b in baseline.benchmarks] == [b.subsets for b in train.benchmarks]
    await run_to_end(bot, baseline.run_id, outcomes(2, 0.3))
    reports = [c for c in bot.bot_comments() if "tunebot:compare:" in c]
    assert len(reports) == 1
    assert "CMMLU" in reports[0] and "significant" in reports[0].lower()

    # /compare base-model finds both sides stored: no dispatch, the report is refreshed in place.
    await bot.comment("/compare base-model")
    await bot.settle()
    assert len(bot.dispatches()) == 2
    reports = [c for c in bot.github.comments_on("Codertocat/Hello-World", 1) if "tunebot:compare:" in c.body]
    assert len(reports) == 1 and reports[0].edits >= 1
    assert "`base-model`" in reports[0].body
    # Refreshed in place: the last write to the report is the edit that holds its current text.
    [*_, last] = bot.github.calls_to("PATCH", f"/repos/Codertocat/Hello-World/issues/comments/{reports[0].id}")
    assert last.body == {"body": reports[0].body}

    # /compare main: the PR trained on built-in data with the same settings main would use: the same recipe, so
    # there is nothing to compare, and no delta is posted.
    await bot.comment("/compare main")
    await bot.settle()
    assert len(bot.dispatches()) == 2
    [same] = [c for c in bot.bot_comments() if "Same recipe as" in c]
    assert f"main@{bot.repo.branches['main'][:7]}" in same

    # An identical /eval is answered from the store too, unless force=true.
    await bot.comment("/eval cmmlu adapter=latest")
    await bot.settle()
    assert len(bot.dispatches()) == 2
    assert any(train.run_id in c and "force=true" in c for c in bot.bot_comments())
    await bot.comment("/eval cmmlu adapter=latest force=true")
    await bot.settle()
    assert len(bot.dispatches()) == 3


async def test_compare_against_a_run_id_uses_that_runs_results(memory_bot) -> None:
    bot = await memory_bot(policy=POLICY)
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    first = job_of(bot.dispatches()[0])
    await run_to_end(bot, first.run_id, outcomes(1, 0.5))
    baseline = job_of(bot.dispatches()[1])
    await run_to_end(bot, baseline.run_id, outcomes(2, 0.5))
    await bot.comment("/train tiny max_steps=30")
    await bot.settle()
    second = job_of(bot.dispatches()[2])
    await run_to_end(bot, second.run_id, outcomes(3, 0.9))
    await bot.comment(f"/compare {first.run_id}")
    await bot.settle()
    assert len(bot.dispatches()) == 3
    reports = [c for c in bot.bot_comments() if f"tunebot:compare:{second.run_id}" in c]
    assert reports and f"against `{first.run_id}`" in reports[-1]
    # A run id is looked up, never guessed from its shape: an unknown one is just a ref that names nothing.
    await bot.comment("/compare tb-000000000000")
    await bot.settle()
    assert any("`tb-000000000000` is not a branch, tag or commit" in c for c in bot.bot_comments())
    await bot.comment("/compare run:tb-000000000000")
    await bot.settle()
    assert any("has no run `tb-000000000000`" in c for c in bot.bot_comments())
    assert len(bot.dispatches()) == 3


async def test_a_served_train_scores_the_base_model_in_the_same_run_so_compare_needs_no_second_dispatch(
        make_bot) -> None:
    """Issue 14: `/train … backend=served` asks the runner for the base model too (one server start); the bot
    compares with those scores and dispatches no baseline eval."""
    bot = await make_bot(policy=POLICY)
    await bot.comment("/train tiny max_steps=20 backend=served")
    await bot.settle()
    [dispatch] = bot.dispatches()
    train = job_of(dispatch)
    assert train.kind == "train+eval" and train.eval_backend == "served" and train.eval_base is True
    run = await bot.service.store.get_run(train.run_id)
    await bot.post_event(train.run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(train.run_id, run.run_token, 1, "eval_result", **outcomes(1, 0.9))
    await bot.post_event(train.run_id, run.run_token, 2, "eval_result", **outcomes(2, 0.3), model="base")
    await bot.post_event(train.run_id, run.run_token, 3, "finished", status="succeeded")
    await bot.settle()
    assert len(bot.dispatches()) == 1  # no baseline run: the base model was scored in the same server start
    [report] = [c for c in bot.bot_comments() if "tunebot:compare:" in c]
    assert "`base-model`" in report and "significant" in report.lower()
    # The run's own card shows the adapter's score, not the base model's.
    view = await bot.service.store.get_run(train.run_id)
    assert view is not None and view.state == "succeeded"
