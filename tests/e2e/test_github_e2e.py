"""End to end: a signed PR comment → the service → workflow_dispatch on a fake GitHub, which "runs the workflow"
the way deploy/github/tunebot-run.yml does on a runner: verify the signed job, then the real agent (real ms-swift
training, real EvalScope on the real C-Eval and CMMLU samples) reporting back over HMAC-signed callbacks."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.config import DingTalkRobot, Secret
from tests.bot.service.conftest import SIGNING_KEY, job_of
from tests.fakes.dingtalk import FakeDingTalk
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.slow

POLICY = """version: 1
benchmarks:
  default: [ceval, cmmlu]
notify:
  slack: "#tunebot"
  dingtalk: team
"""


def workflow(tmp_path: Path, cache: Path, results: dict[str, Any]):
    """An on_dispatch hook that behaves like the dispatched workflow on a self-hosted runner."""

    async def run(fake_run: Any, inputs: dict[str, str]) -> None:
        gh = workflow.github  # type: ignore[attr-defined]
        work = tmp_path / "runner" / inputs["run_id"]
        work.mkdir(parents=True)
        job = work / "job.json"
        job.write_bytes(inputs["job"].encode("utf-8"))  # byte for byte, as the workflow writes it
        env = {**os.environ, "TUNEBOT_JOB_SIGNING_KEY": SIGNING_KEY, "TUNEBOT_CACHE": str(cache)}
        verify = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", "runner_agent.verify_job", str(job), "--signature", inputs["job_sig"],
            "--run-id", inputs["run_id"], "--sha", inputs["sha"], "--callback-url", inputs["callback_url"], env=env)
        assert await verify.wait() == 0, "the runner refused a job the bot signed"
        env.pop("TUNEBOT_JOB_SIGNING_KEY")  # only the verify step sees the key
        gh.set_run_status(fake_run.id, "in_progress")
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tunebot", "agent", "run", "--job", str(job), "--out", str(work / "out"),
            "--repo-dir", str(work), "--offline", "--quiet", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await agent.communicate()
        results[inputs["run_id"]] = (agent.returncode, output.decode(errors="replace"), work / "out")
        # What the workflow's "Upload the signed event log" step leaves behind for the bot.
        log = {n: (work / "out" / n).read_bytes() for n in ("events.jsonl", "events.jsonl.sig")
               if (work / "out" / n).is_file()}
        if log:
            gh.add_artifact(fake_run.id, f"tunebot-{inputs['run_id']}-events", log)
        gh.set_run_status(fake_run.id, "completed", "success" if agent.returncode == 0 else "failure")
        await gh.emit_workflow_run(fake_run.id, "completed")

    return run


async def wait_runs_done(bot: Any, timeout: float = 600) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await bot.settle()
        if not await bot.service.store.active_runs() and not [t for t in bot.github._tasks if not t.done()]:
            await bot.settle()
            return
        await asyncio.sleep(0.5)
    raise AssertionError("runs did not finish in time")


async def test_train_then_compare_with_real_agent_posts_to_pr_slack_and_dingtalk(make_bot, tmp_path) -> None:
    results: dict[str, Any] = {}
    cache = tmp_path / "cache"
    hook = workflow(tmp_path, cache, results)
    async with FakeSlack() as slack, FakeDingTalk() as ding:
        bot = await make_bot(
            app=True, policy=POLICY, on_dispatch=hook, slack_token=Secret(slack.token),
            slack_api_url=slack.base_url,
            dingtalk_robots=(DingTalkRobot("team", ding.webhook_url(), Secret(ding.secret)),))
        workflow.github = bot.github  # type: ignore[attr-defined]
        bot.github.webhook_url = f"{bot.url}/webhook"
        bot.github.webhook_secret = "webhook-secret-for-tests"

        # 1. /train: real LoRA training and evaluation; then the base model is evaluated as the baseline.
        res = await bot.comment("/train tiny preset=tiny-demo")
        assert res.status == 202
        await wait_runs_done(bot)
        jobs = [job_of(d) for d in bot.dispatches()]
        assert [j.kind for j in jobs] == ["train+eval", "eval"], [r[1][-2000:] for r in results.values()]
        train, baseline = jobs
        assert set(results) == {train.run_id, baseline.run_id}  # the runner really ran both jobs
        for run_id, (code, output, _) in results.items():
            assert code == 0, f"agent for {run_id} failed:\n{output[-3000:]}"

        run = await bot.service.store.get_run(train.run_id)
        assert run.state == "succeeded" and run.last_seq > 5
        stored = await bot.service.store.load_results(train.run_id)
        assert set(stored.benchmarks) == {"ceval", "cmmlu"}
        cmmlu = stored.benchmarks["cmmlu"]
        assert cmmlu.n > 100 and len(cmmlu.questions) == cmmlu.n  # per-question outcomes reached the bot
        assert all(re.fullmatch(r"(agronomy|anatomy|arts)/\d+", q) for q in cmmlu.questions)

        # The sticky card ends with real scores; the check run is completed.
        [card] = [c for c in bot.bot_comments() if f"tunebot:run:{train.run_id}" in c]
        assert "succeeded" in card.lower() and "C-Eval" in card and "CMMLU" in card
        check = bot.github.check_runs[run.check_run_id]
        assert check.status == "completed" and check.conclusion in ("success", "neutral")

        # The comparison (tiny + adapter vs the base model, same questions) is on the PR, in Slack and DingTalk.
        [report] = [c for c in bot.bot_comments() if "tunebot:compare:" in c]
        assert "McNemar" in report or "p =" in report or "p=" in report
        base = await bot.service.store.load_results(baseline.run_id)
        delta = stored.benchmarks["cmmlu"].score - base.benchmarks["cmmlu"].score
        assert delta > 0.05, f"the adapter should beat the base model clearly, Δ={delta:.3f}"
        assert "significant" in report.lower()
        await bot.service.outbox.pump()
        for _ in range(50):
            await bot.service.outbox.pump()
            if ding.calls and any("tunebot" in (m.text or "") or m.blocks for m in slack.messages):
                break
            await asyncio.sleep(0.1)
        assert slack.messages, "nothing reached Slack"
        assert any(c.errcode == 0 for c in ding.calls), "nothing reached DingTalk"

        # 2. /compare main now answers from the store: no new dispatch.
        await bot.comment("/compare main")
        await wait_runs_done(bot)
        assert len(bot.dispatches()) == 2
