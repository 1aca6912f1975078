"""Keeping the truth without the agent: the periodic sweep, and the seed's trigger (training configs in a PR)."""


from tests.bot.service.conftest import job_of
from tests.fakes.deliveries import APP_TARGET_ID

CONFIG = """tunebot: train
model: tiny
hyper:
  max_steps: 30
benchmarks: none
"""


async def test_sweep_fails_a_run_whose_runner_died_silently(memory_bot) -> None:
    bot = await memory_bot(stale_run_after_s=60.0)
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    rid = job_of(bot.dispatches()[0]).run_id
    run = await bot.service.store.get_run(rid)
    # The runner died: GitHub marks the job failed, but no webhook reached us and the agent never spoke.
    bot.github.set_run_status(run.workflow_run_id, "completed", "failure")
    assert await bot.service.sweep() == 0  # not stale yet: nothing is asked of GitHub
    later = bot.service.clock() + 3600
    bot.service.clock = lambda: later
    assert await bot.service.sweep() == 1
    await bot.settle()
    run = await bot.service.store.get_run(rid)
    assert run.state == "failed" and f"actions/runs/{run.workflow_run_id}" in run.reason
    assert any("failed" in c.lower() for c in bot.bot_comments() if rid in c)


async def test_a_pr_touching_a_training_config_trains_when_the_policy_says_so(memory_bot) -> None:
    bot = await memory_bot(policy="version: 1\nauto_train: true\n")
    pull = bot.repo.add_pull(3, author="Codertocat", files=["configs/tiny.yaml", "README.md"])
    bot.repo.add_file("configs/tiny.yaml", CONFIG, ref=pull.head_sha)
    res = await bot.pull_request("opened", 3, pull.head_sha)
    assert res.status == 202
    await bot.settle()
    [dispatch] = bot.dispatches()
    job = job_of(dispatch)
    assert job.model.name == "tiny" and job.hyper.max_steps == 30 and job.sha == pull.head_sha
    assert job.kind == "train"


async def test_auto_train_is_off_by_default(memory_bot) -> None:
    bot = await memory_bot()
    pull = bot.repo.add_pull(3, author="Codertocat", files=["configs/tiny.yaml"])
    bot.repo.add_file("configs/tiny.yaml", CONFIG, ref=pull.head_sha)
    await bot.pull_request("opened", 3, pull.head_sha)
    await bot.settle()
    assert bot.dispatches() == []




async def test_ordinary_yaml_beside_a_training_config_is_ignored_and_the_config_still_trains(memory_bot) -> None:
    """Other tools' YAML under configs/ (no `tunebot: train`) is not ours: it must neither crash the delivery nor
    stop the PR's real training config, whichever order the files come in."""
    bot = await memory_bot(policy="version: 1\nauto_train: true\n")
    files = ["configs/lint.yaml", "configs/tiny.yaml"]
    pull = bot.repo.add_pull(3, author="Codertocat", files=files)
    bot.repo.add_file("configs/lint.yaml", "rules:\n  line-length: 120\n", ref=pull.head_sha)
    bot.repo.add_file("configs/tiny.yaml", CONFIG, ref=pull.head_sha)
    res = await bot.pull_request("opened", 3, pull.head_sha)
    assert res.status == 202
    await bot.settle()
    [dispatch] = bot.dispatches()
    assert job_of(dispatch).hyper.max_steps == 30
    delivery = await bot.service.store.get_delivery(APP_TARGET_ID, res.delivery_id)
    assert delivery is not None and delivery.state == "done" and delivery.error is None
    assert not any("lint.yaml" in c for c in bot.bot_comments(3))


async def test_performed_outbox_writes_are_pruned_after_the_retention(memory_bot) -> None:
    """The outbox keeps what it performed only as long as deliveries are kept: it must not grow forever."""
    bot = await memory_bot(delivery_retention_days=7)
    await bot.comment("/help")
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    rid = job_of(bot.dispatches()[0]).run_id
    performed = [i for i in await bot.service.store.outbox_for_run(rid) if i.state == "done"]
    assert performed  # the dispatch and the card at least
    assert await bot.service.store.get_by_key(f"dispatch:{rid}") is not None
    assert await bot.service.prune() == 0  # nothing is old yet
    real_clock = bot.service.clock
    bot.service.clock = lambda: real_clock() + 8 * 86400
    pruned = await bot.service.prune()
    assert pruned >= len(performed) + 2  # the run's writes, the /help reply and both deliveries
    assert await bot.service.store.outbox_for_run(rid) == []
    assert await bot.service.store.get_by_key(f"dispatch:{rid}") is None
    assert (await bot.service.store.get_run(rid)) is not None  # runs are history, never pruned


def _signed_log(tmp_path, rid: str, token: str, events: list[tuple[str, dict]]) -> dict[str, bytes]:
    """The two files the workflow uploads as `tunebot-<run>-events`, written by the agent's own sink."""
    from commands.events import make_event
    from runner_agent.sinks import JsonlSink

    path = tmp_path / rid / "events.jsonl"
    path.parent.mkdir(parents=True)
    sink = JsonlSink(path, token=token)
    sink.start()
    for seq, (type_, data) in enumerate(events):
        sink.submit(make_event(rid, seq, 1_800_000_000.0 + seq, type_, **data))
    sink.close(5.0)
    return {"events.jsonl": path.read_bytes(), "events.jsonl.sig": (path.parent / "events.jsonl.sig").read_bytes()}


_EVAL = {"benchmark": "cmmlu", "score": 0.5, "n": 4, "correct": 2, "config_hash": "h",
         "subsets": {"agronomy": {"n": 4, "correct": 2}},
         "questions": {"agronomy/0": True, "agronomy/1": False, "agronomy/2": True, "agronomy/3": False}}


async def _eval_run_whose_last_callback_was_lost(bot, tmp_path, *, tamper: bool = False):
    run = await bot.start_run("/eval cmmlu model=tiny")
    rid = run.run_id
    events = [("accepted", {"kind": "eval", "model": "tiny"}), ("phase", {"phase": "eval"}),
              ("eval_result", _EVAL), ("finished", {"status": "succeeded"})]
    for seq, (type_, data) in enumerate(events[:2]):  # the callback worked at first ...
        assert (await bot.post_event(rid, run.run_token, seq, type_, **data))[0] == 202
    files = _signed_log(tmp_path, rid, run.run_token, events)  # ... but the end only reached the log
    if tamper:
        files["events.jsonl"] = files["events.jsonl"].replace(b'"correct": 2', b'"correct": 3', 1)
    bot.github.add_artifact(run.workflow_run_id, f"tunebot-{rid}-events", files)
    bot.github.set_run_status(run.workflow_run_id, "completed", "success")
    await bot.workflow_run(run.workflow_run_id, "completed")
    await bot.settle()
    return rid


async def test_a_run_whose_final_callback_was_lost_finishes_from_its_signed_event_log(memory_bot, tmp_path) -> None:
    bot = await memory_bot()
    rid = await _eval_run_whose_last_callback_was_lost(bot, tmp_path)
    run = await bot.service.store.get_run(rid)
    assert run.state == "succeeded", run.reason
    results = await bot.service.store.load_results(rid)
    assert results.benchmarks["cmmlu"].questions == _EVAL["questions"]
    [card] = [c for c in bot.bot_comments() if f"tunebot:run:{rid}" in c]
    assert "succeeded" in card and "CMMLU" in card and "50.0" in card


async def test_a_tampered_event_log_is_refused_and_the_run_fails_saying_why(memory_bot, tmp_path) -> None:
    bot = await memory_bot()
    rid = await _eval_run_whose_last_callback_was_lost(bot, tmp_path, tamper=True)
    run = await bot.service.store.get_run(rid)
    assert run.state == "failed"
    assert "event log was refused" in run.reason and "signature does not match" in run.reason
    assert await bot.service.store.load_results(rid) is None
