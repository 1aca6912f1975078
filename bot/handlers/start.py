"""`/train`, `/eval`, `/compare`: plan the jobs the command means and start them (or answer from the store)."""

from __future__ import annotations

from bot.jobs import Reused
from commands.plan import plan

from .base import Invocation, Parts, handles


@handles("train", "eval", "compare")
async def start_jobs(parts: Parts, inv: Invocation) -> None:
    conv, pull, cmd = inv.conv, inv.pull, inv.cmd
    if pull is None:
        await inv.reply(parts, conv.say("reply.pr_only", verb=cmd.verb))
        return
    pr = await parts.jobs.pr_facts(conv.repo, conv.number, pull)
    planned = plan(cmd, pr, conv.policy, parts.core.catalog, iter(parts.core.new_run_id, None))
    for j, pj in enumerate(planned):
        key = f"{inv.key}.{j}"
        started = await parts.jobs.launch(conv, pull, cmd, pj, key)
        if isinstance(started, Reused):
            await parts.comparisons.answer_reused(conv, pull, pj, started, key)
