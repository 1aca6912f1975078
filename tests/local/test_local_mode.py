"""Local mode (`tunebot try`, `make demo`): the real service and store, the terminal as the PR thread, and a local
dispatcher that runs the real agent on this machine."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.local import LocalSession, Terminal
from tests.paths import REPO


async def test_replies_reach_the_terminal_without_any_runner(tmp_path: Path) -> None:
    out = io.StringIO()
    async with LocalSession(tmp_path, tmp_path / "runs", terminal=Terminal(out)) as session:
        await session.say("/trian tiny")
        await session.say("/help train")
    text = out.getvalue()
    assert "did you mean `/train`?" in text
    assert "lora_rank" in text  # /help train lists the keys with their ranges
    assert session.github.runs == {}


@pytest.mark.slow
async def test_eval_runs_the_real_agent_locally_and_finishes_the_card(tmp_path: Path) -> None:
    out = io.StringIO()
    runs = tmp_path / "runs"
    async with LocalSession(tmp_path, runs, terminal=Terminal(out),
                            agent_args=["--quiet", "--cache", str(tmp_path / "c")]) as session:
        await session.say("/eval cmmlu model=tiny subsets=agronomy limit=5")
        [run] = await session.service.store.runs_for_pr(session.github.repo, 1)
        assert run.state == "succeeded", out.getvalue()[-3000:]
        results = await session.service.store.load_results(run.run_id)
    assert results.benchmarks["cmmlu"].n == 5 and len(results.benchmarks["cmmlu"].questions) == 5
    assert (runs / run.run_id / "out" / "results.json").is_file()
    assert "succeeded" in out.getvalue()


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "tunebot", "runs", "--database-url", f"sqlite:///{tmp_path}/x.db",
                          "show", "tb-nope"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 1 and "no run 'tb-nope'" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "tunebot", "frobnicate"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 2 and "unknown command" in res.stderr
    res = subprocess.run([sys.executable, "-m", "tunebot", "serve"], capture_output=True, text=True,
                         env={k: v for k, v in env.items() if k not in ("WEBHOOK_SECRET", "GITHUB_TOKEN")},
                         timeout=60)
    assert res.returncode == 2 and "WEBHOOK_SECRET" in res.stderr and "Traceback" not in res.stderr
