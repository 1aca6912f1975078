"""Local mode (`tunebot try`, `make demo`): the real service and store, the terminal as the PR thread, and a local
dispatcher that runs the real agent on this machine."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.local import LocalSession, Terminal
from bot.local_github import LocalGitHub
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
        # The session serves the run's web page (what `make demo` ends by printing).
        async with aiohttp.ClientSession() as http, http.get(session.run_page(run.run_id)) as resp:
            page = await resp.text()
        assert resp.status == 200 and run.run_id in page and "agronomy" in page
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


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout.strip()


def _rows(k: int) -> str:
    return "".join(f'{{"instruction": "Add the two numbers.", "input": "{i} plus {k}", "output": "{i + k}"}}\n'
                   for i in range(16))


@pytest.mark.slow
async def test_compare_main_locally_trains_the_baseline_from_mains_tree(tmp_path: Path) -> None:
    """`tunebot try "/compare main"` on a branch that changed the training data: main is resolved with git, the same
    recipe is trained from main's tree (a git worktree at main's commit), and the report names both commits and the
    data change; a branch that changed only the README is told there is nothing to compare."""
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / ".tunebot.yml").write_text("version: 1\nbenchmarks:\n  default: [cmmlu]\n", encoding="utf-8")
    (repo / "data" / "train.jsonl").write_text(_rows(1), encoding="utf-8")
    (repo / "README.md").write_text("demo\n", encoding="utf-8")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "main")
    main_sha = _git(repo, "rev-parse", "HEAD")
    main_blob = _git(repo, "rev-parse", "HEAD:data/train.jsonl")
    _git(repo, "checkout", "-q", "-b", "more-data")
    (repo / "data" / "train.jsonl").write_text(_rows(1) + _rows(2), encoding="utf-8")
    _git(repo, "commit", "-q", "-am", "more data")
    head_sha = _git(repo, "rev-parse", "HEAD")
    head_blob = _git(repo, "rev-parse", "HEAD:data/train.jsonl")

    out = io.StringIO()
    runs = tmp_path / "runs"
    args = ["--quiet", "--cache", str(tmp_path / "c")]
    train = "/train tiny dataset=data/train.jsonl max_steps=5"
    async with LocalSession(repo, runs, terminal=Terminal(out), agent_args=args) as session:
        await session.say(train)
        await session.say("/compare main")
        store = session.service.store
        made = await store.runs_for_pr(session.github.repo, 1)
        reads = {r.run_id: await session.service.jobs.resolved_inputs(r.run_id) for r in made}
    text = out.getvalue()
    assert all(r.state == "succeeded" for r in made), text[-4000:]
    [baseline] = [r for r in made if r.head_sha == main_sha]
    assert baseline.kind == "train+eval" and baseline.job_spec["datasets"][0]["blob"] == main_blob
    # The agent trained on main's file, as its signed events say (the worktree it read is removed when it exits).
    assert [d["blob"] for d in reads[baseline.run_id]["datasets"]] == [main_blob]
    assert not (runs / baseline.run_id / "tree").exists()
    assert f"main@{main_sha[:7]}" in text and head_sha[:7] in text
    assert f"data/train.jsonl: blob {main_blob[:7]} → blob {head_blob[:7]}" in text
    assert "tunebot:compare" not in text  # markers are not printed, the report is
    assert "Δ (points)" in text

    _git(repo, "checkout", "-q", "-b", "docs", "main")
    (repo / "README.md").write_text("better words\n", encoding="utf-8")
    _git(repo, "commit", "-q", "-am", "docs")
    out = io.StringIO()
    async with LocalSession(repo, tmp_path / "runs-docs", terminal=Terminal(out), agent_args=args) as session:
        await session.say(train)
        n = len(session.github.runs)
        await session.say("/compare main")
        assert len(session.github.runs) == n  # nothing dispatched for the comparison
    assert f"Same recipe as `main@{main_sha[:7]}`" in out.getvalue()


async def test_the_worktree_of_a_baseline_run_is_removed_when_its_agent_exits(tmp_path: Path) -> None:
    """A job at another commit runs in a git worktree (tree_for); once the agent is done, the worktree goes and git
    forgets it: the user's repository does not collect one worktree per baseline."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("one\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "one")
    old = _git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("two\n")
    _git(repo, "commit", "-q", "-am", "two")
    gh = LocalGitHub(repo, tmp_path / "runs", Terminal(io.StringIO()), "you", head_sha=_git(repo, "rev-parse", "HEAD"),
                     agent_args=["--quiet"])
    # A job the agent refuses at once (malformed): what matters is that it ran in a worktree of `old`.
    await gh.dispatch_workflow("local/demo", "tunebot-run.yml", "main",
                               {"run_id": "tb-wt", "job": json.dumps({"sha": old, "version": 0}), "sha": old})
    await gh.wait_all()
    [run] = gh.runs.values()
    assert run.run.conclusion == "failure"
    assert (tmp_path / "runs" / "tb-wt" / "job.json").is_file()
    assert not (tmp_path / "runs" / "tb-wt" / "tree").exists()
    assert _git(repo, "worktree", "list").count("\n") == 0, _git(repo, "worktree", "list")


@pytest.mark.slow
async def test_compare_with_the_base_model_through_one_served_model(tmp_path: Path) -> None:
    """Issue 14 end to end: the real service, the real agent, a real `swift deploy`: `/eval … adapter=latest
    backend=served` scores the adapter and the base model in one server start, and the base-model comparison is
    posted from that one run, with no baseline run dispatched."""
    out = io.StringIO()
    runs = tmp_path / "runs"
    args = ["--quiet", "--cache", str(tmp_path / "c")]
    async with LocalSession(tmp_path, runs, terminal=Terminal(out), agent_args=args) as session:
        await session.say("/train tiny max_steps=40 learning_rate=0.002 eval=none")
        await session.say("/eval cmmlu adapter=latest limit=5 backend=served")
        made = await session.service.store.runs_for_pr(session.github.repo, 1)
    text = out.getvalue()
    assert sorted(r.kind for r in made) == ["eval", "train"], text[-4000:]  # no baseline eval was dispatched
    assert all(r.state == "succeeded" for r in made), text[-4000:]
    [evaluated] = [r for r in made if r.kind == "eval"]
    job = evaluated.job_spec or {}
    assert job.get("eval_backend") == "served" and job.get("eval_base") is True
    run_out = runs / evaluated.run_id / "out"
    deploy_log = (run_out / "logs" / "swift-deploy.log").read_text(encoding="utf-8", errors="replace")
    assert "adapter" in deploy_log
    import json

    results = json.loads((run_out / "results.json").read_text(encoding="utf-8"))
    assert results["manifest"]["eval_backend"] == "served-transformers"
    assert results["scores"]["cmmlu"]["n"] == results["base_scores"]["cmmlu"]["n"] == 10
    # The comparison report, against the base model scored in the same run.
    assert f"Comparing `{evaluated.run_id}` against `base-model`" in text
