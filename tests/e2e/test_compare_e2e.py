"""End to end, `/compare main` means main: the real agent trains the PR's recipe and, at main's commit, the same
recipe on main's data file (the fake GitHub serves both versions and "checks out" the job's SHA for the runner);
the report names both commits and the blob change; a second PR against the same main commit reuses that baseline; a
PR that changed only the README is told there is nothing to compare."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bot.service.conftest import SIGNING_KEY, job_of
from tests.e2e.test_github_e2e import wait_runs_done
from tests.fakes.github import _sha

pytestmark = pytest.mark.slow

POLICY = "version: 1\nbenchmarks:\n  default: [cmmlu]\n"
TRAIN = "/train tiny dataset=data/train.jsonl max_steps=5"


def rows(k: int) -> str:
    return "".join(f'{{"instruction": "Add the two numbers.", "input": "{i} plus {k}", "output": "{i + k}"}}\n'
                   for i in range(16))


def blob(text: str) -> str:
    raw = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


def workflow(tmp_path: Path, cache: Path, results: dict[str, Any]):
    """The dispatched workflow on a runner: check out the job's SHA, verify the signed job, run the real agent."""

    async def run(fake_run: Any, inputs: dict[str, str]) -> None:
        gh = workflow.github  # type: ignore[attr-defined]
        repo = workflow.repo  # type: ignore[attr-defined]
        work = tmp_path / "runner" / inputs["run_id"]
        checkout = work / "checkout"
        for path, content in repo.files_at(inputs["sha"]).items():  # actions/checkout of that commit
            target = checkout / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        checkout.mkdir(parents=True, exist_ok=True)
        job = work / "job.json"
        job.write_bytes(inputs["job"].encode("utf-8"))
        env = {**os.environ, "TUNEBOT_JOB_SIGNING_KEY": SIGNING_KEY, "TUNEBOT_CACHE": str(cache)}
        verify = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", "runner_agent.verify_job", str(job), "--signature", inputs["job_sig"],
            "--run-id", inputs["run_id"], "--sha", inputs["sha"], "--callback-url", inputs["callback_url"], env=env)
        assert await verify.wait() == 0, "the runner refused a job the bot signed"
        env.pop("TUNEBOT_JOB_SIGNING_KEY")
        gh.set_run_status(fake_run.id, "in_progress")
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tunebot", "agent", "run", "--job", str(job), "--out", str(work / "out"),
            "--repo-dir", str(checkout), "--offline", "--quiet", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await agent.communicate()
        results[inputs["run_id"]] = (agent.returncode, output.decode(errors="replace"))
        gh.set_run_status(fake_run.id, "completed", "success" if agent.returncode == 0 else "failure")
        await gh.emit_workflow_run(fake_run.id, "completed")

    return run


async def test_compare_main_backfills_main_reuses_it_and_knows_a_readme_change(make_bot, tmp_path) -> None:
    results: dict[str, Any] = {}
    bot = await make_bot(policy=POLICY, on_dispatch=workflow(tmp_path, tmp_path / "cache", results))
    workflow.github = bot.github  # type: ignore[attr-defined]
    workflow.repo = bot.repo  # type: ignore[attr-defined]
    bot.send_workflow_webhooks()
    repo = bot.repo
    main = repo.add_commit(_sha("main"), {"data/train.jsonl": rows(1), "README.md": "hi"}, branch="main")
    pr1 = repo.add_commit(_sha("pr1"), {"data/train.jsonl": rows(1) + rows(2), "README.md": "hi"})
    repo.pulls[1].head_sha = pr1
    repo.add_pull(2, head_sha=repo.add_commit(_sha("pr2"), {"data/train.jsonl": rows(3), "README.md": "hi"}),
                  author="Codertocat")
    repo.add_pull(3, head_sha=repo.add_commit(_sha("pr3"), {"data/train.jsonl": rows(1), "README.md": "new"}),
                  author="Codertocat")

    # PR 1 changes data/train.jsonl: /train, then /compare main backfills the same recipe at main's commit.
    await bot.comment(TRAIN)
    await wait_runs_done(bot)
    await bot.comment("/compare main")
    await wait_runs_done(bot)
    jobs = [job_of(d) for d in bot.dispatches()]
    for run_id, (code, output) in results.items():
        assert code == 0, f"agent for {run_id} failed:\n{output[-3000:]}"
    [baseline] = [j for j in jobs if j.sha == main]
    assert baseline.kind == "train+eval" and baseline.datasets[0].blob == blob(rows(1))
    stored = await bot.service.store.load_results(baseline.run_id)
    assert stored is not None and stored.benchmarks["cmmlu"].n > 0  # the runner really trained and evaluated it
    [report] = [c for c in bot.bot_comments() if "tunebot:compare:" in c and "-vs-main" in c]
    assert main[:7] in report and pr1[:7] in report
    assert f"data/train.jsonl: blob {blob(rows(1))[:7]} → blob {blob(rows(1) + rows(2))[:7]}" in report
    assert "p (McNemar)" in report

    # PR 2, against the same main commit: its baseline is the stored one (no dispatch for it).
    await bot.comment(TRAIN, number=2)
    await wait_runs_done(bot)
    n = len(bot.dispatches())
    await bot.comment("/compare main", number=2)
    await wait_runs_done(bot)
    assert len(bot.dispatches()) == n
    assert any("-vs-main" in c and main[:7] in c for c in bot.bot_comments(2))

    # PR 3 changed only the README: same recipe as main.
    await bot.comment(TRAIN, number=3)
    await wait_runs_done(bot)
    n = len(bot.dispatches())
    await bot.comment("/compare main", number=3)
    await wait_runs_done(bot)
    assert len(bot.dispatches()) == n
    assert any(f"Same recipe as `main@{main[:7]}`" in c for c in bot.bot_comments(3))
