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


async def test_a_served_eval_scored_natively_is_stored_as_native_and_never_answers_a_served_request(
        make_bot) -> None:
    """Issue 14: the server could not start and the agent scored natively (its signed eval_result says so): the
    score is stored under the native key, the card says so, a later served request runs again and a native one is
    answered from the store."""
    bot = await make_bot(policy=POLICY)
    await bot.comment("/eval cmmlu model=tiny backend=served")
    await bot.settle()
    [dispatch] = bot.dispatches()
    job = job_of(dispatch)
    assert job.eval_backend == "served"
    run = await bot.service.store.get_run(job.run_id)
    await bot.post_event(job.run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(job.run_id, run.run_token, 1, "eval_result", **outcomes(1, 0.5), backend="native")
    await bot.post_event(job.run_id, run.run_token, 2, "finished", status="succeeded")
    await bot.settle()
    stored = await bot.service.store.result_keys(job.run_id)
    assert set(stored) == {"cmmlu"} and stored["cmmlu"] != run.benchmark_keys["cmmlu"]  # not the served key
    [card] = [c for c in bot.bot_comments() if f"tunebot:run:{job.run_id}" in c]
    assert "served evaluation could not start: scored natively" in card
    await bot.comment(f"/status {job.run_id}")  # its provenance names the key its score is really stored under
    await bot.settle()
    assert any(stored["cmmlu"][:16] in c for c in bot.bot_comments())
    assert not any(run.benchmark_keys["cmmlu"][:16] in c for c in bot.bot_comments())

    await bot.comment("/eval cmmlu model=tiny backend=served")  # served asked: the native score does not answer
    await bot.settle()
    assert len(bot.dispatches()) == 2
    assert job_of(bot.dispatches()[1]).eval_backend == "served"
    await bot.comment("/eval cmmlu model=tiny")  # native asked: exactly the key the native score is stored under
    await bot.settle()
    assert len(bot.dispatches()) == 2
    assert any(job.run_id in c and "force=true" in c for c in bot.bot_comments())


async def test_base_scores_of_a_served_train_answer_a_later_served_base_model_request(make_bot) -> None:
    """Issue 14: the base model scored in a served train's server start is stored under the keys a plain served
    `/eval` of the base model gets: another PR's `/compare base-model backend=served` dispatches nothing."""
    bot = await make_bot(policy=POLICY + "models:\n  default: tiny\n")
    await bot.comment("/train tiny max_steps=20 backend=served")
    await bot.settle()
    train = job_of(bot.dispatches()[0])
    assert train.eval_base is True
    run = await bot.service.store.get_run(train.run_id)
    await bot.post_event(train.run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(train.run_id, run.run_token, 1, "eval_result", **outcomes(1, 0.9), backend="served")
    await bot.post_event(train.run_id, run.run_token, 2, "eval_result", **outcomes(2, 0.3), model="base",
                         backend="served")
    await bot.post_event(train.run_id, run.run_token, 3, "finished", status="succeeded")
    await bot.settle()
    assert len(bot.dispatches()) == 1
    base = await bot.service.store.load_results(f"{train.run_id}-base")
    assert base is not None and base.benchmarks["cmmlu"].score == outcomes(2, 0.3)["score"]
    own = await bot.service.store.load_results(train.run_id)
    assert own is not None and own.benchmarks["cmmlu"].score == outcomes(1, 0.9)["score"]  # kept apart

    bot.repo.add_pull(2, head_sha="2" * 40)  # another PR, at another commit
    await bot.comment("/compare base-model backend=served", number=2)
    await bot.settle()
    assert len(bot.dispatches()) == 1  # both sides are the stored base-model scores: no run
    assert any(f"{train.run_id}-base" in c for c in bot.bot_comments(2))
    assert any("tunebot:compare:" in c and "`base-model`" in c for c in bot.bot_comments(2))
    await bot.comment("/eval cmmlu model=tiny", number=2)  # native asked: the served scores do not answer it
    await bot.settle()
    assert len(bot.dispatches()) == 2


async def test_a_served_train_scored_natively_is_compared_with_a_native_baseline(make_bot) -> None:
    """The fallback's scores are native: the base model it is compared with is evaluated natively too."""
    bot = await make_bot(policy=POLICY)
    await bot.comment("/train tiny max_steps=20 tuner=full backend=served")
    await bot.settle()
    train = job_of(bot.dispatches()[0])
    assert train.eval_backend == "served" and not train.eval_base  # a full fine-tune has no adapter to route
    await run_to_end(bot, train.run_id, {**outcomes(1, 0.9), "backend": "native"})
    [baseline] = [job_of(d) for d in bot.dispatches()[1:]]
    assert baseline.adapter is None and baseline.eval_backend is None
