"""`/plan`, `plan=true`, and `approval.above_gpu_hours` with `/approve`, through the real service and a fake GitHub."""

from __future__ import annotations

import re

from tests.bot.service.conftest import REPO, job_of

POLICY = "gpu: {type: a10}\napproval: {above_gpu_hours: 1}\n"
BIG = "/train qwen2.5-7b-instruct max_steps=2000 dataset=alpaca-zh"


async def test_plan_replies_with_the_estimate_and_starts_nothing(make_bot) -> None:
    bot = await make_bot(policy=POLICY)
    await bot.comment(f"/plan {BIG}")
    await bot.settle()
    await bot.comment("/train tiny max_steps=20 plan=true")
    await bot.settle()
    assert bot.dispatches() == []
    big, tiny = bot.bot_comments()[-2:]
    assert "nothing was started" in big and "Peak GPU memory per device" in big
    # qwen2.5-7b-instruct: QLoRA (the size default), batch 2 × 2048 tokens; 2000 steps → 8.19M tokens.
    assert "8.19M" in big and "GPU-hours" in big and "a10" in big and "Queue: 0" in big
    assert "Needs approval" in big and "above this repository's `approval.above_gpu_hours` (1)" in big
    assert "`tiny`" in tiny and "fits one a10 (24 GiB)" in tiny and "Needs approval" not in tiny
    assert "plan=true" not in tiny  # the plan shows the command it would run


async def test_costly_train_waits_and_only_a_maintainer_approve_starts_exactly_it(make_bot) -> None:
    bot = await make_bot(policy=POLICY)
    bot.repo.set_permission("alice", "write")
    await bot.comment(BIG, login="alice", association="MEMBER")
    await bot.settle()
    assert bot.dispatches() == []
    waiting = bot.bot_comments()[-1]
    assert "waits for approval" in waiting and "`maintain`" in waiting
    plan_hash = re.search(r"/approve ([0-9a-f]{12})", waiting).group(1)  # type: ignore[union-attr]
    [pending] = await bot.service.store.waiting_plans(REPO, 1)
    assert pending.plan_hash.startswith(plan_hash) and pending.requester == "alice"

    await bot.comment(f"/approve {plan_hash}", login="alice", association="MEMBER")  # write < maintain
    await bot.settle()
    assert bot.dispatches() == []
    refused = bot.bot_comments()[-1]
    assert "@alice" in refused and "`write`" in refused and "`maintain`" in refused

    small = bot.dispatches()
    await bot.comment("/train tiny max_steps=20", login="alice", association="MEMBER")  # under the limit: runs
    await bot.settle()
    assert len(bot.dispatches()) == len(small) + 1

    await bot.comment(f"/approve {plan_hash}")  # Codertocat is admin
    await bot.settle()
    job = job_of(bot.dispatches()[-1])
    assert len(bot.dispatches()) == 2
    assert job.run_id == pending.jobs[0]["job"]["run_id"] and job.sha == pending.head_sha
    assert job.model.name == "qwen2.5-7b-instruct" and job.hyper.max_steps == 2000
    run = await bot.service.store.get_run(job.run_id)
    assert run is not None and run.actor == "alice"
    assert any("@Codertocat approved plan" in c and "of @alice" in c for c in bot.bot_comments())

    await bot.comment("/approve")
    await bot.settle()
    assert len(bot.dispatches()) == 2 and "Nothing to approve" in bot.bot_comments()[-1]


async def test_approval_is_void_after_a_push(make_bot) -> None:
    bot = await make_bot(policy=POLICY)
    await bot.comment(BIG)
    await bot.settle()
    bot.repo.pulls[1].head_sha = "e" * 40
    await bot.comment("/approve")
    await bot.settle()
    assert bot.dispatches() == []
    assert "head is now `eeeeeee`" in bot.bot_comments()[-1]
    assert await bot.service.store.waiting_plans(REPO, 1) == []


async def test_several_waiting_plans_need_the_hash(make_bot) -> None:
    bot = await make_bot(policy=POLICY)
    await bot.comment(BIG)
    await bot.settle()
    await bot.comment(BIG.replace("2000", "3000"))
    await bot.settle()
    await bot.comment("/approve")
    await bot.settle()
    assert bot.dispatches() == [] and "waiting:" in bot.bot_comments()[-1]


async def test_auto_training_above_the_limit_waits_for_approve_too(make_bot) -> None:
    from tests.bot.service.test_truth import CONFIG

    bot = await make_bot(policy="version: 1\nauto_train: true\napproval: {above_gpu_hours: 0}\n")
    pull = bot.repo.add_pull(3, author="Codertocat", files=["configs/tiny.yaml"])
    bot.repo.add_file("configs/tiny.yaml", CONFIG, ref=pull.head_sha)
    await bot.pull_request("opened", 3, pull.head_sha)
    await bot.settle()
    assert bot.dispatches() == [] and "waits for approval" in bot.bot_comments(3)[-1]
    await bot.comment("/approve", number=3)
    await bot.settle()
    [dispatch] = bot.dispatches()
    assert job_of(dispatch).hyper.max_steps == 30 and job_of(dispatch).sha == pull.head_sha
