"""The comment flow end to end inside the service: signed webhook → parse → authorize → dispatch → run card,
and agent callbacks → card, check run and results. The agent side is scripted here; tests/e2e runs the real one."""

import pytest

from commands.events import verify_body
from tests.bot.service.conftest import REPO, SIGNING_KEY, job_of
from tests.fakes.deliveries import load_payload


async def test_train_comment_dispatches_signed_job_on_default_branch(memory_bot) -> None:
    bot = await memory_bot()
    res = await bot.comment("Looks good.\n/train tiny max_steps=20")
    assert res.status == 202
    await bot.settle()
    [dispatch] = bot.dispatches()
    assert dispatch["ref"] == "main"  # never the PR branch: its author could rewrite the workflow
    inputs = dispatch["inputs"]
    job = job_of(dispatch)
    assert job.model.name == "tiny" and job.hyper.max_steps == 20 and job.kind in ("train", "train+eval")
    assert job.sha == bot.repo.pulls[1].head_sha == inputs["sha"]
    assert verify_body(SIGNING_KEY, inputs["job"].encode(), inputs["job_sig"])
    assert job.callback is not None and job.callback.url == f"{bot.url}/api/runs/{job.run_id}/events"
    assert inputs["callback_url"] == job.callback.url
    run = await bot.service.store.get_run(job.run_id)
    assert run is not None and run.state == "dispatched" and run.workflow_run_id is not None
    [card] = bot.bot_comments()
    assert f"<!-- tunebot:run:{job.run_id} -->" in card
    reactions = bot.github.calls_to("POST", "*/reactions")
    assert [r.body["content"] for r in reactions] == ["eyes"]
    # Exactly what reached GitHub: the permission of the commenter and the PR were read; then the 👀 on the
    # comment, the dispatch (on the default branch, asking for the run's id) and the card, in that order.
    assert ("GET", f"/repos/{REPO}/collaborators/Codertocat/permission", None) in bot.github.calls
    assert ("GET", f"/repos/{REPO}/pulls/1", None) in bot.github.calls
    assert [c for c in bot.github.calls if c.method != "GET"] == [
        ("POST", f"/repos/{REPO}/issues/comments/{res.comment_id}/reactions", {"content": "eyes"}),
        ("POST", f"/repos/{REPO}/actions/workflows/tunebot-run.yml/dispatches",
         {"ref": "main", "inputs": inputs, "return_run_details": True}),
        ("POST", f"/repos/{REPO}/issues/1/comments", {"body": card}),
    ]
    assert set(inputs) == {"run_id", "job", "job_sig", "sha", "callback_url"} and inputs["run_id"] == job.run_id


async def test_callbacks_drive_the_card_to_final_scores(memory_bot) -> None:
    bot = await memory_bot()
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    job = job_of(bot.dispatches()[0])
    run = await bot.service.store.get_run(job.run_id)
    rid, token = run.run_id, run.run_token
    assert (await bot.post_event(rid, token, 0, "accepted", kind=job.kind, model="tiny"))[0] == 202
    assert (await bot.post_event(rid, token, 1, "phase", phase="train"))[0] == 202
    # Out of order: seq 3 arrives before seq 2; it waits for the gap to fill.
    assert (await bot.post_event(rid, token, 3, "progress", step=10, total=20, loss=2.0))[0] == 202
    # seq 3 is stored (the agent is not asked to send it again) but not applied: progress is still empty.
    assert [e.seq for e in await bot.service.store.events_after(rid, 1)] == [3]
    run = await bot.service.store.get_run(rid)
    assert run.last_seq == 1 and run.progress is None
    assert (await bot.post_event(rid, token, 2, "progress", step=5, total=20, loss=3.0))[0] == 202
    run = await bot.service.store.get_run(rid)
    assert run.last_seq == 3 and run.state == "running" and run.progress["step"] == 10
    # A replayed event is recognised, not applied twice.
    assert (await bot.post_event(rid, token, 2, "progress", step=5, total=20, loss=3.0))[0] == 200
    subsets = {"agronomy": {"n": 2, "correct": 1}, "arts": {"n": 2, "correct": 2}}
    questions = {"agronomy/0": True, "agronomy/1": False, "arts/0": True, "arts/1": True}
    await bot.post_event(rid, token, 4, "eval_result", benchmark="cmmlu", score=0.75, n=4, correct=3,
                         subsets=subsets, questions=questions)
    await bot.post_event(rid, token, 5, "finished", status="succeeded")
    await bot.settle()
    run = await bot.service.store.get_run(rid)
    assert run.state == "succeeded"
    results = await bot.service.store.load_results(rid)
    assert results.benchmarks["cmmlu"].questions == questions
    [card] = bot.bot_comments()
    assert "75" in card and "cmmlu" in card.lower()


async def test_forged_and_wrong_run_callbacks_are_refused(memory_bot) -> None:
    bot = await memory_bot()
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    run = await bot.service.store.get_run(job_of(bot.dispatches()[0]).run_id)
    status, _ = await bot.post_event(run.run_id, "not-the-token", 0, "accepted", kind="train", model="tiny")
    assert status == 401
    status, _ = await bot.post_event("tb-000000000000", run.run_token, 0, "accepted", kind="train", model="x")
    assert status == 404
    assert (await bot.service.store.get_run(run.run_id)).last_seq == -1


async def test_forged_signature_and_duplicate_delivery(make_bot) -> None:
    bot = await make_bot()
    forged = await bot.comment("/train tiny", secret="wrong-secret")
    assert forged.status == 401
    first = await bot.comment("/train tiny max_steps=20", delivery_id="11111111-2222-3333-4444-555555555555")
    again = await bot.comment("/train tiny max_steps=20", delivery_id="11111111-2222-3333-4444-555555555555")
    assert (first.status, again.status) == (202, 200)
    await bot.settle()
    assert len(bot.dispatches()) == 1
    text = bot.service.metrics.render()
    assert 'tunebot_webhook_requests_total{outcome="bad_signature"} 1' in text
    assert 'tunebot_webhook_requests_total{outcome="duplicate"} 1' in text


async def test_unauthorized_commenter_gets_a_reason_and_nothing_runs(memory_bot) -> None:
    bot = await memory_bot()
    bot.repo.set_permission("mallory", "read")
    await bot.comment("/train tiny", login="mallory", association="CONTRIBUTOR")
    await bot.settle()
    assert bot.dispatches() == []
    [reply] = bot.bot_comments()
    assert "@mallory" in reply and "write" in reply
    # The answer is a reply and nothing else: no dispatch, no card, no check run.
    assert [(c.method, c.url) for c in bot.github.calls if c.method != "GET"] == [
        ("POST", f"/repos/{REPO}/issues/comments/{bot.github.comments_on(REPO, 1)[0].id}/reactions"),
        ("POST", f"/repos/{REPO}/issues/1/comments")]


async def test_bots_edits_and_plain_comments_cost_no_github_call(memory_bot) -> None:
    bot = await memory_bot()
    before = len(bot.github.calls)
    assert bot.github.calls == [("GET", "/user", None)]  # at start-up, who the bot is
    await bot.comment("just a normal review comment")
    await bot.comment("/train tiny", login="dependabot[bot]", user_type="Bot")
    await bot.comment("/train tiny", action="edited")
    await bot.settle()
    assert len(bot.github.calls) == before and bot.dispatches() == []


async def test_status_and_cancel(memory_bot) -> None:
    bot = await memory_bot()
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    rid = job_of(bot.dispatches()[0]).run_id
    await bot.comment("/status")
    await bot.settle()
    assert any(rid in c and "|" in c for c in bot.bot_comments())
    await bot.comment("/cancel")
    await bot.settle()
    run = await bot.service.store.get_run(rid)
    assert run.state == "cancelled" and "Codertocat" in (run.reason or "")
    assert bot.github.calls_to("POST", f"*/actions/runs/{run.workflow_run_id}/cancel") == [
        ("POST", f"/repos/{REPO}/actions/runs/{run.workflow_run_id}/cancel", None)]
    assert bot.github.runs[run.workflow_run_id].conclusion == "cancelled"
    # The card is edited in place to say so (one card, never a second one).
    [card] = [c for c in bot.github.comments_on(REPO, 1) if f"tunebot:run:{rid}" in c.body]
    assert bot.github.calls_to("PATCH", f"*/issues/comments/{card.id}")[-1].body == {"body": card.body}
    # The agent learns it was cancelled from the answer to its next event.
    status, _ = await bot.post_event(rid, run.run_token, 0, "heartbeat")
    assert status == 410


async def test_retry_dispatches_a_failed_run_again_with_the_same_job(memory_bot) -> None:
    bot = await memory_bot()
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    first = job_of(bot.dispatches()[0])
    run = await bot.service.store.get_run(first.run_id)
    await bot.post_event(first.run_id, run.run_token, 0, "finished", status="failed", reason="runner died")
    await bot.settle()
    await bot.comment("/retry")
    await bot.settle()
    second = job_of(bot.dispatches()[1])
    assert second.run_id != first.run_id
    assert (second.model, second.hyper, second.sha) == (first.model, first.hyper, first.sha)
    assert (await bot.service.store.get_run(second.run_id)).retry_of == first.run_id


async def test_retry_refuses_runs_that_did_not_fail(memory_bot) -> None:
    """`/help retry` promises "a failed or cancelled run": a succeeded or still-running one is not paid for twice."""
    bot = await memory_bot()
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    rid = job_of(bot.dispatches()[0]).run_id
    await bot.comment("/retry")  # still queued: nothing failed on this PR
    await bot.settle()
    assert len(bot.dispatches()) == 1
    assert "no failed or cancelled run" in bot.bot_comments()[-1]
    await bot.comment(f"/retry {rid}")
    await bot.settle()
    assert len(bot.dispatches()) == 1
    assert f"`{rid}` is dispatched: only a failed or cancelled run can be retried" in bot.bot_comments()[-1]
    run = await bot.service.store.get_run(rid)
    await bot.post_event(rid, run.run_token, 0, "finished", status="succeeded")
    await bot.settle()
    await bot.comment(f"/retry {rid}")
    await bot.settle()
    assert len(bot.dispatches()) == 1
    assert f"`{rid}` is succeeded" in bot.bot_comments()[-1]
    await bot.comment("/retry tb-000000000000")
    await bot.settle()
    assert "has no run `tb-000000000000`" in bot.bot_comments()[-1] and len(bot.dispatches()) == 1


async def test_status_with_a_run_id_shows_that_run(memory_bot) -> None:
    bot = await memory_bot()
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    first = job_of(bot.dispatches()[0]).run_id
    await bot.comment("/eval cmmlu model=tiny")
    await bot.settle()
    second = job_of(bot.dispatches()[1]).run_id
    await bot.comment(f"/status {first}")
    await bot.settle()
    reply = bot.bot_comments()[-1]
    # That run's own card, not the PR's list of runs; without the card's marker, so it is never taken for the card.
    assert f"tunebot run `{first}`" in reply and second not in reply and "<!-- tunebot:" not in reply
    await bot.comment("/status tb-000000000000")
    await bot.settle()
    assert "has no run `tb-000000000000`" in bot.bot_comments()[-1]


async def test_workflow_failure_before_agent_spoke_is_reconciled(memory_bot) -> None:
    bot = await memory_bot()
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    run = await bot.service.store.get_run(job_of(bot.dispatches()[0]).run_id)
    bot.github.set_run_status(run.workflow_run_id, "completed", "failure")
    await bot.workflow_run(run.workflow_run_id, "completed")
    await bot.settle()
    run = await bot.service.store.get_run(run.run_id)
    assert run.state == "failed" and "before the agent reported" in run.reason
    assert "actions/runs" in run.reason
    assert any("failed" in c.lower() for c in bot.bot_comments())


async def test_fork_pr_needs_a_grant_bound_to_the_head_sha(memory_bot) -> None:
    bot = await memory_bot()
    bot.repo.add_pull(2, head_repo="eve/Hello-World", author="eve")
    bot.repo.set_permission("eve", "write")
    await bot.comment("/train tiny max_steps=20", number=2, login="eve", association="CONTRIBUTOR")
    await bot.settle()
    assert bot.dispatches() == []
    assert "/ok-to-train" in bot.bot_comments(2)[-1]
    await bot.comment("/ok-to-train", number=2)  # Codertocat is admin
    await bot.settle()
    await bot.comment("/train tiny max_steps=20", number=2, login="eve", association="CONTRIBUTOR")
    await bot.settle()
    assert len(bot.dispatches()) == 1
    # A new push voids the approval: the next /train needs a new one.
    new_sha = "f" * 40
    bot.repo.pulls[2].head_sha = new_sha
    payload = load_payload("pull_request.synchronize", number=2, pull_request__number=2,
                           pull_request__head__sha=new_sha)
    payload["repository"]["full_name"] = "Codertocat/Hello-World"
    res = await bot.deliver("pull_request", payload)
    assert res.status == 202
    await bot.settle()
    await bot.comment("/train tiny max_steps=20", number=2, login="eve", association="CONTRIBUTOR")
    await bot.settle()
    assert len(bot.dispatches()) == 1
    assert "/ok-to-train" in bot.bot_comments(2)[-1]


async def test_bot_killed_mid_run_and_restarted_loses_and_doubles_nothing(make_bot, tmp_path) -> None:
    db = tmp_path / "shared.db"
    bot = await make_bot(db=db)
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    rid = job_of(bot.dispatches()[0]).run_id
    run = await bot.service.store.get_run(rid)
    await bot.post_event(rid, run.run_token, 0, "accepted", kind="train", model="tiny")
    await bot.settle()
    # "Crash": the next delivery is recorded (202) but never processed, then the process goes away.
    from bot.app import RUNTIME_KEY

    bot.runner.app[RUNTIME_KEY].stopping = True
    for task in bot.runner.app[RUNTIME_KEY].tasks:
        task.cancel()
    res = await bot.comment("/status")
    assert res.status == 202
    github = bot.github
    await bot.session.close()
    await bot.runner.cleanup()
    await bot.service.store.close()
    # Restart on the same database: the accepted delivery is processed, the run continues, nothing is doubled.
    bot2 = await make_bot(db=db, github=github)
    await bot2.settle()
    run = await bot2.service.store.get_run(rid)
    await bot2.post_event(rid, run.run_token, 1, "finished", status="succeeded")
    await bot2.settle()
    assert (await bot2.service.store.get_run(rid)).state == "succeeded"
    assert len(bot2.dispatches()) == 1
    cards = [c for c in bot2.bot_comments() if f"tunebot:run:{rid}" in c]
    assert len(cards) == 1
    assert any("|" in c and rid in c and f"tunebot:run:{rid}" not in c for c in bot2.bot_comments())


async def test_app_mode_creates_and_completes_a_check_run(make_bot) -> None:
    bot = await make_bot(app=True)
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    assert bot.github.issued_tokens, "App mode must authenticate with an installation token"
    rid = job_of(bot.dispatches()[0]).run_id
    run = await bot.service.store.get_run(rid)
    assert run.check_run_id is not None
    check = bot.github.check_runs[run.check_run_id]
    assert check.head_sha == run.head_sha
    await bot.post_event(rid, run.run_token, 0, "accepted", kind="train", model="tiny")
    await bot.settle()
    assert bot.github.check_runs[run.check_run_id].status == "in_progress"
    await bot.post_event(rid, run.run_token, 1, "finished", status="failed", reason="CUDA out of memory")
    await bot.settle()
    check = bot.github.check_runs[run.check_run_id]
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert "CUDA out of memory" in next(c for c in bot.bot_comments() if rid in c)


async def test_the_check_run_requests_follow_the_run(memory_bot) -> None:
    """What the App sends for a run's check: one check run on the PR's head, then edits of that one (never a second
    check run), linking the workflow run and ending with the agent's reason."""
    bot = await memory_bot(app=True)
    run = await bot.start_run()
    rid = run.run_id
    await bot.post_event(rid, run.run_token, 0, "accepted", kind="train", model="tiny")
    await bot.settle()
    await bot.post_event(rid, run.run_token, 1, "finished", status="failed", reason="CUDA out of memory")
    await bot.settle()
    run = await bot.service.store.get_run(rid)
    [create] = bot.github.calls_to("POST", "*/check-runs")
    assert create.url == f"/repos/{REPO}/check-runs"
    assert {k: create.body[k] for k in ("name", "head_sha", "status", "external_id")} == {
        "name": "tunebot (train)", "head_sha": run.head_sha, "status": "queued", "external_id": rid}
    updates = bot.github.calls_to("PATCH", "*/check-runs/*")
    assert {c.url for c in updates} == {f"/repos/{REPO}/check-runs/{run.check_run_id}"}
    assert [c.body.get("status") for c in updates] == ["in_progress", "completed"]
    final = updates[-1].body
    assert final["conclusion"] == "failure" and "CUDA out of memory" in final["output"]["summary"]
    assert final["details_url"] == f"https://github.com/{REPO}/actions/runs/{run.workflow_run_id}"
    check = bot.github.check_runs[run.check_run_id]
    assert (check.status, check.conclusion, check.head_sha) == ("completed", "failure", run.head_sha)


async def test_progress_bursts_become_one_card_edit_per_interval(memory_bot) -> None:
    # The interval is long enough that a loaded CI machine cannot post the burst across two intervals; the timer
    # itself is tested in test_coalesce.py. Here: the burst is one edit, and the latest state is not lost.
    bot = await memory_bot(card_edit_interval_s=30.0)
    await bot.comment("/train tiny max_steps=200")
    await bot.settle()
    rid = job_of(bot.dispatches()[0]).run_id
    run = await bot.service.store.get_run(rid)
    before = len(bot.github.calls_to("PATCH", "*/issues/comments/*"))
    for seq in range(20):
        await bot.post_event(rid, run.run_token, seq, "progress", step=seq + 1, total=200, loss=3.0 - seq / 10)
    edits = len(bot.github.calls_to("PATCH", "*/issues/comments/*")) - before
    assert edits <= 2  # 20 progress events inside one interval: the first edit goes out, the rest wait
    assert "20/200" not in next(c for c in bot.bot_comments() if f"tunebot:run:{rid}" in c)
    await bot.settle()  # shutdown writes what is waiting for its interval
    [card] = [c for c in bot.bot_comments() if f"tunebot:run:{rid}" in c]
    assert "20/200" in card


@pytest.mark.parametrize("app", [True, False], ids=["app-mode", "token-mode"])
async def test_the_bot_learns_its_login_and_edits_its_own_card(make_bot, app: bool) -> None:
    """A real install is never called `tunebot`: the login comes from GitHub (GET /app -> `<slug>[bot]`, or GET
    /user), and with it the bot finds and edits its own run card and ignores its own comments."""
    bot = await make_bot(app=app)
    expected = "acme-tunebot[bot]" if app else "acme-ci-bot"
    assert bot.service.config.bot_login == expected
    await bot.comment("/train tiny max_steps=20")
    await bot.settle()
    rid = job_of(bot.dispatches()[0]).run_id
    run = await bot.service.store.get_run(rid)
    [card] = [c for c in bot.github.comments_on(REPO, 1) if f"tunebot:run:{rid}" in c.body]
    assert card.login == expected
    await bot.post_event(rid, run.run_token, 0, "progress", step=7, total=20, loss=2.5)
    await bot.settle()
    assert "7/20" in bot.github.comments[card.id].body and bot.github.comments[card.id].edits >= 1
    # The bot's own comment holding a command is never taken as one.
    await bot.comment("/train tiny max_steps=20", login=expected, user_type="Bot" if app else "User")
    await bot.settle()
    assert len(bot.dispatches()) == 1
