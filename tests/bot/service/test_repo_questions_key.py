"""The repository's own questions (general_mcq) are keyed by their files' blobs: the bot lists the folder at the PR's
head (fake GitHub's contents API; git in local mode) and the signed job carries the hash the runner checks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.local import Terminal
from bot.local_github import LocalGitHub
from commands.packs import repo_questions_hash
from tests.bot.service.conftest import job_of
from tests.bot.service.test_compare_recipe import blob
from tests.fakes.github import _sha

QUESTIONS = "question,A,B,answer\nWhat is 1 plus 1?,2,3,A\n"


async def test_eval_general_mcq_carries_the_hash_of_the_questions_blobs(make_bot) -> None:
    bot = await make_bot(policy="version: 1\n")
    files = {"data/mcq/arith.csv": QUESTIONS, "data/mcq/notes.md": "not questions", "README.md": "hi"}
    bot.repo.pulls[1].head_sha = bot.repo.add_commit(_sha("q1"), files)
    await bot.comment("/eval general_mcq model=tiny")
    await bot.settle()
    first = job_of(bot.dispatches()[-1])
    [bench] = first.benchmarks
    assert bench.content_hash == repo_questions_hash({"data/mcq/arith.csv": blob(QUESTIONS)})
    # The same questions at a later commit (only the README changed): the same result key, so the stored result
    # would answer it; the run's key does not name the commit.
    run1 = await bot.service.store.get_run(first.run_id)
    bot.repo.pulls[1].head_sha = bot.repo.add_commit(_sha("q2"), {**files, "README.md": "changed"})
    await bot.comment("/eval general_mcq model=tiny force=true")
    await bot.settle()
    second = job_of(bot.dispatches()[-1])
    assert second.sha != first.sha and second.benchmarks[0].content_hash == bench.content_hash
    run2 = await bot.service.store.get_run(second.run_id)
    assert run2.benchmark_keys == run1.benchmark_keys


async def test_local_mode_lists_the_question_folder_with_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "data" / "mcq").mkdir(parents=True)
    (repo / "data" / "mcq" / "arith.csv").write_text(QUESTIONS, encoding="utf-8")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "q"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                         text=True).stdout.strip()
    gh = LocalGitHub(workdir=repo, runs_dir=tmp_path / "runs", terminal=Terminal(), user="me", head_sha=sha)
    expected = {"data/mcq/arith.csv": blob(QUESTIONS)}
    assert await gh.folder_blobs("local/demo", "data/mcq", sha) == expected  # the working tree at head
    (repo / "data" / "mcq" / "arith.csv").write_text(QUESTIONS + "2 plus 2?,4,5,A\n", encoding="utf-8")
    assert await gh.folder_blobs("local/demo", "data/mcq", "0" * 39 + "1") is None  # an unknown commit
    # At the commit (not the edited working tree): git's tree.
    gh_other = LocalGitHub(workdir=repo, runs_dir=tmp_path / "runs", terminal=Terminal(), user="me")
    assert await gh_other.folder_blobs("local/demo", "data/mcq", sha) == expected
    assert await gh.folder_blobs("local/demo", "nope", sha) is None
