"""/eval of an earlier run's adapter: the dispatched job names the workflow run whose artifact holds the adapter."""

from typing import Any

from tests.bot.service.conftest import job_of


def recorder(seen: dict[str, int]) -> Any:
    """An on_dispatch hook that notes which workflow run GitHub started for each tunebot run id."""

    async def hook(fake_run: Any, inputs: dict[str, Any]) -> None:
        seen[inputs["run_id"]] = fake_run.id

    return hook


async def finish(bot: Any, run_id: str) -> None:
    run = await bot.service.store.get_run(run_id)
    await bot.post_event(run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(run_id, run.run_token, 1, "finished", status="succeeded")
    await bot.settle()


async def test_adapter_eval_names_the_training_workflow_run(memory_bot) -> None:
    seen: dict[str, int] = {}
    bot = await memory_bot(on_dispatch=recorder(seen))
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    train = job_of(bot.dispatches()[0])
    assert train.trains and train.adapter is None
    await finish(bot, train.run_id)
    stored = await bot.service.store.get_run(train.run_id)
    assert stored.workflow_run_id == seen[train.run_id]  # what the dispatch answered, kept by the bot

    await bot.comment(f"/eval cmmlu adapter={train.run_id}")
    await bot.settle()
    await bot.comment("/eval cmmlu adapter=latest force=true")
    await bot.settle()
    evals = [job_of(d) for d in bot.dispatches()[1:]]
    assert len(evals) == 2
    for job in evals:
        assert job.kind == "eval" and job.adapter is not None
        assert job.adapter.run_id == train.run_id
        assert job.adapter.workflow_run_id == seen[train.run_id]
        assert job.adapter.path is None  # a runner finds the adapter in the downloaded artifact, not on a path
        # The stored spec is the dispatched one, so a re-dispatch after a restart names the same artifact.
        run = await bot.service.store.get_run(job.run_id)
        assert run.job_spec["adapter"]["workflow_run_id"] == seen[train.run_id]
    # Two distinct workflow runs: the eval's id is the training run's, not its own.
    assert all(seen[job.run_id] != seen[train.run_id] for job in evals)


async def test_the_adapter_hash_the_training_run_reported_rides_in_the_signed_eval_job(memory_bot) -> None:
    bot = await memory_bot()
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    train = job_of(bot.dispatches()[0])
    run = await bot.service.store.get_run(train.run_id)
    digest = "5e" * 32
    await bot.post_event(train.run_id, run.run_token, 0, "accepted", kind=run.kind, model="tiny")
    await bot.post_event(train.run_id, run.run_token, 1, "artifact", name="adapter", path="adapter", sha256=digest,
                         bytes=1234)
    await bot.post_event(train.run_id, run.run_token, 2, "finished", status="succeeded")
    await bot.settle()
    await bot.comment("/eval cmmlu adapter=latest")
    await bot.settle()
    job = job_of(bot.dispatches()[-1])
    assert job.adapter is not None and job.adapter.run_id == train.run_id and job.adapter.sha256 == digest
    # /status <run> shows the identities: the recipe key, the data, the adapter hash it saved.
    await bot.comment(f"/status {train.run_id}")
    await bot.settle()
    [status] = [c for c in bot.bot_comments() if "Identities" in c]
    assert f"`{digest}`" in status and f"`{run.result_key[:16]}`" in status
    assert "recipe (training result key)" in status
