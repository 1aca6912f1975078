"""`/compare <ref>` compares the PR's trained recipe with the same recipe at the ref's commit: resolved through the
GitHub API (branch, tag, short SHA), backfilled once and reused by every later PR against that commit, and "same
recipe" when the PR changed nothing that the training reads. The agent's side is played with signed events here;
tests/e2e/test_compare_e2e.py runs the real agent."""

from __future__ import annotations

import hashlib

from tests.bot.service.conftest import REPO, job_of
from tests.bot.service.test_compare_flow import outcomes, run_to_end
from tests.fakes.github import _sha

POLICY = "version: 1\nbenchmarks:\n  default: [cmmlu]\n"
MAIN_DATA = '{"instruction": "Add.", "input": "1 plus 2", "output": "3"}\n'
PR_DATA = MAIN_DATA + '{"instruction": "Add.", "input": "2 plus 2", "output": "4"}\n'
OLD_DATA = '{"instruction": "Add.", "input": "0 plus 0", "output": "0"}\n'
TRAIN = "/train tiny dataset=data/train.jsonl max_steps=20"


def blob(text: str) -> str:
    raw = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


def setup_repo(bot) -> dict[str, str]:
    """main (data A) tagged v1 one commit back (data O); PR 1 changes the data (B), PR 2 (same base) too, PR 3
    changes only the README."""
    repo = bot.repo
    old = repo.add_commit(_sha("old"), {"data/train.jsonl": OLD_DATA, "README.md": "v1"}, tags=("v1",))
    main = repo.add_commit(_sha("main"), {"data/train.jsonl": MAIN_DATA, "README.md": "hi"}, branch="main")
    pr1 = repo.add_commit(_sha("pr1"), {"data/train.jsonl": PR_DATA, "README.md": "hi"})
    repo.pulls[1].head_sha = pr1
    pr2 = repo.add_commit(_sha("pr2"), {"data/train.jsonl": PR_DATA, "README.md": "hi, again"})
    repo.add_pull(2, head_sha=pr2, author="Codertocat")
    pr3 = repo.add_commit(_sha("pr3"), {"data/train.jsonl": MAIN_DATA, "README.md": "better words"})
    repo.add_pull(3, head_sha=pr3, author="Codertocat")
    return {"old": old, "main": main, "pr1": pr1, "pr2": pr2, "pr3": pr3}


async def train_and_finish(bot, number: int, score: float, seed: int) -> str:
    before = len(bot.dispatches())
    await bot.comment(TRAIN, number=number)
    await bot.settle()
    job = job_of(bot.dispatches()[before])
    assert job.kind == "train+eval"
    await run_to_end(bot, job.run_id, outcomes(seed, score))
    # The automatic report after training is against the untuned base model (stored after the first PR).
    for d in bot.dispatches()[before + 1:]:
        extra = job_of(d)
        if extra.kind == "eval" and extra.adapter is None:
            await run_to_end(bot, extra.run_id, outcomes(99, 0.25))
    return job.run_id


async def test_compare_main_backfills_the_recipe_at_main_and_later_prs_reuse_it(memory_bot) -> None:
    bot = await memory_bot(policy=POLICY)
    shas = setup_repo(bot)
    head_run = await train_and_finish(bot, 1, 0.9, 1)
    head_job = job_of(bot.dispatches()[0])
    assert head_job.sha == shas["pr1"] and head_job.datasets[0].blob == blob(PR_DATA)
    n = len(bot.dispatches())

    await bot.comment("/compare main")
    await bot.settle()
    assert len(bot.dispatches()) == n + 1
    base_job = job_of(bot.dispatches()[-1])
    # The same recipe (model, tuner, hyper-parameters, dataset names) at main's commit, with main's file.
    assert base_job.kind == "train+eval" and base_job.sha == shas["main"]
    assert base_job.datasets[0].id == "data/train.jsonl" and base_job.datasets[0].blob == blob(MAIN_DATA)
    assert base_job.hyper == head_job.hyper and base_job.tuner == head_job.tuner
    assert [b.name for b in base_job.benchmarks] == ["cmmlu"]
    waiting = [c for c in bot.bot_comments() if "Baseline `main@" in c]
    assert waiting and f"main@{shas['main'][:7]}" in waiting[0] and "training" in waiting[0]
    assert f"blob {blob(MAIN_DATA)[:7]} → blob {blob(PR_DATA)[:7]}" in waiting[0]

    await run_to_end(bot, base_job.run_id, outcomes(5, 0.3))
    [report] = [c for c in bot.bot_comments() if f"tunebot:compare:{head_run}-vs-main" in c]
    assert shas["main"][:7] in report and shas["pr1"][:7] in report  # both commits
    assert f"data/train.jsonl: blob {blob(MAIN_DATA)[:7]} → blob {blob(PR_DATA)[:7]}" in report
    assert "CMMLU" in report and "significant" in report.lower()

    # PR 2 against the same main commit: its /compare main reuses the baseline (no dispatch for it).
    await train_and_finish(bot, 2, 0.8, 2)
    n = len(bot.dispatches())
    await bot.comment("/compare main", number=2)
    await bot.settle()
    assert len(bot.dispatches()) == n, "the stored baseline should have been reused"
    assert any("tunebot:compare:" in c and base_job.sha[:7] in c for c in bot.bot_comments(2))

    # PR 3 changed only the README: the same recipe as main, nothing to compare, no delta posted.
    await train_and_finish(bot, 3, 0.3, 3)
    n = len(bot.dispatches())
    await bot.comment("/compare", number=3)  # default: the PR's base branch
    await bot.settle()
    assert len(bot.dispatches()) == n
    texts = bot.bot_comments(3)
    assert any("Same recipe as `main@" in c and "Nothing to compare" in c for c in texts)
    assert not any("tunebot:compare:" in c and "CMMLU" in c and "-vs-main" in c for c in texts)


async def test_compare_resolves_tags_and_short_shas_and_refuses_unknown_refs(memory_bot) -> None:
    bot = await memory_bot(policy=POLICY)
    shas = setup_repo(bot)
    await train_and_finish(bot, 1, 0.9, 1)
    n = len(bot.dispatches())

    await bot.comment("/compare v1")
    await bot.settle()
    assert len(bot.dispatches()) == n + 1
    tagged = job_of(bot.dispatches()[-1])
    assert tagged.sha == shas["old"] and tagged.datasets[0].blob == blob(OLD_DATA)
    # The tag is resolved once, and the data is read at the commit it named, not at the (movable) tag; the
    # workflow itself still comes from the default branch.
    calls = bot.github.calls
    assert calls.count(("GET", f"/repos/{REPO}/commits/v1", None)) == 1
    assert ("GET", f"/repos/{REPO}/contents/data/train.jsonl?ref={shas['old']}", None) in calls
    assert not any(c.url.endswith("?ref=v1") for c in calls)
    assert bot.dispatches()[-1]["ref"] == "main" and bot.dispatches()[-1]["inputs"]["sha"] == shas["old"]

    await bot.comment(f"/compare {shas['main'][:8]}")
    await bot.settle()
    assert len(bot.dispatches()) == n + 2
    assert job_of(bot.dispatches()[-1]).sha == shas["main"]

    before = len(bot.github.calls)
    res = await bot.comment("/compare no-such-branch")
    await bot.settle()
    assert len(bot.dispatches()) == n + 2
    # Asked once, then only the 👀 and the reply were written.
    assert ("GET", f"/repos/{REPO}/commits/no-such-branch", None) in bot.github.calls[before:]
    assert [(c.method, c.url) for c in bot.github.calls[before:] if c.method != "GET"] == [
        ("POST", f"/repos/{REPO}/issues/comments/{res.comment_id}/reactions"),
        ("POST", f"/repos/{REPO}/issues/1/comments")]
    assert any("`no-such-branch` is not a branch, tag or commit" in c and "nothing was started" in c
               for c in bot.bot_comments())


async def test_compare_before_training_says_what_to_do(memory_bot) -> None:
    bot = await memory_bot(policy=POLICY)
    setup_repo(bot)
    await bot.comment("/compare main", number=3)
    await bot.settle()
    assert bot.dispatches() == []
    assert any("nothing trained on this PR" in c for c in bot.bot_comments(3))


async def test_a_dataset_missing_at_the_ref_is_a_clear_reply(memory_bot) -> None:
    bot = await memory_bot(policy=POLICY)
    shas = setup_repo(bot)
    bot.repo.add_commit(_sha("bare"), {"README.md": "no data yet"}, branch="bare")
    await train_and_finish(bot, 1, 0.9, 1)
    n = len(bot.dispatches())
    await bot.comment("/compare bare")
    await bot.settle()
    assert len(bot.dispatches()) == n
    assert any("`data/train.jsonl` does not exist at bare@" in c for c in bot.bot_comments())
    assert shas["main"]
