"""The leaderboard workflow's two commands around a real agent: `tunebot parse --emit-job` writes the job, `tunebot
agent run` evaluates the built-in tiny model with EvalScope (and a second model fails for real), and `tunebot runs
leaderboard --post` ranks what the agent left and posts it to the fake GitHub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from commands.leaderboard import MARKER
from tests.bot.leaderboard.helpers import tunebot
from tests.fakes.github import FakeGitHub
from tests.paths import BENCHMARKS

pytestmark = pytest.mark.slow

SHA = "0123456789abcdef0123456789abcdef01234567"


async def _evaluate(tmp: Path, results: Path, model: str, comment: str) -> int:
    job = tmp / f"{model}.json"
    emitted = await tunebot("parse", "--emit-job", str(job), "--run-id", f"leaderboard-1-1-{model}", "--sha", SHA,
                            "--repo", "octo/lb", comment)
    assert emitted.code == 0, emitted.stderr
    run = await tunebot("agent", "run", "--job", str(job), "--out", str(results / f"leaderboard-{model}"),
                        "--cache", str(tmp / "cache"), "--bench-data", str(BENCHMARKS), "--offline", "--quiet",
                        timeout=300)
    return run.code


async def test_real_agent_outputs_are_ranked_and_posted(tmp_path: Path) -> None:
    results = tmp_path / "results"
    # Two questions of one subject keep EvalScope's run to seconds on a shared CPU.
    assert await _evaluate(tmp_path, results, "tiny", "/eval cmmlu limit=2 subsets=agronomy model=tiny") == 0
    # A hub model the offline runner does not have: the agent fails before any weights are fetched.
    assert await _evaluate(tmp_path, results, "qwen3-8b", "/eval cmmlu limit=2 subsets=agronomy model=qwen3-8b") != 0
    assert not (results / "leaderboard-qwen3-8b" / "results.json").exists()
    tiny = json.loads((results / "leaderboard-tiny" / "results.json").read_text(encoding="utf-8"))
    n = tiny["scores"]["cmmlu"]["n"]
    score = 100 * tiny["scores"]["cmmlu"]["correct"] / n

    async with FakeGitHub() as gh:
        gh.add_repo("octo/lb").issues.add(3)
        board = await tunebot("runs", "leaderboard", "--post", "--results", str(results), "--benchmarks", "cmmlu",
                              env={"GITHUB_TOKEN": gh.token, "GITHUB_REPOSITORY": "octo/lb", "GITHUB_API_URL": gh.url,
                                   "TUNEBOT_LEADERBOARD_ISSUE": "3", "TUNEBOT_LEADERBOARD_AUTHOR": "tunebot[bot]"})
        assert board.code == 0, board.stderr
        (comment,) = gh.comments_on("octo/lb", 3)
    assert comment.body == f"{MARKER}\n{board.stdout}"
    assert f"| 1 | tiny | (base model) | **{score:.1f}** |" in board.stdout and f"| {n} |" in board.stdout
    not_ranked = board.stdout.split("**Not ranked (1)**", 1)[1]
    assert "`qwen3-8b` (`leaderboard-qwen3-8b`): failed: " in not_ranked
