"""`/ok-to-train`: a maintainer approves an untrusted (fork) PR at the head commit they reviewed; `/approve`: a
maintainer starts a /train that waits because its estimate is above `approval.above_gpu_hours`."""

from __future__ import annotations

from dataclasses import replace

from commands import authz
from commands.costplan import plan_hash
from commands.decision import Command
from commands.jobspec import SpecError
from commands.parse import parse_command

from .base import Invocation, Parts, handles
from .start import planned_from_dict


@handles("ok-to-train")
async def ok_to_train(parts: Parts, inv: Invocation) -> None:
    conv = inv.conv
    if inv.pull is None:
        await inv.reply(parts, conv.say("reply.approve.pr_only"))
        return
    core = parts.core
    grant = authz.make_grant(inv.cmd, inv.facts, conv.policy, core.now())
    if isinstance(grant, authz.Denied):
        await inv.reply(parts, f"@{conv.actor} {grant.reason}")
        return
    await core.store.grant(conv.repo, conv.number, grant.sha, conv.actor, now=core.now())
    await inv.reply(parts, conv.say("reply.approved", actor=conv.actor, sha=grant.sha[:7]))


@handles("approve")
async def approve_plan(parts: Parts, inv: Invocation) -> None:
    """Start exactly the waiting plan: same jobs (content hash), same head commit, on behalf of who asked for it.
    Who may approve was decided by authz (`permissions.approve`); the refusal names the permission needed."""
    conv, pull, store = inv.conv, inv.pull, parts.core.store
    if pull is None:
        await inv.reply(parts, conv.say("reply.pr_only", verb="approve"))
        return
    waiting = await store.waiting_plans(conv.repo, conv.number)
    if not waiting:
        await inv.reply(parts, conv.say("reply.plan.none"))
        return
    named = inv.cmd.get("plan")
    if isinstance(named, str):
        chosen = [p for p in waiting if p.plan_hash.startswith(named)]
    else:
        # With several plans waiting, an approval must say which: approving the newest could start one the
        # maintainer never read.
        chosen = waiting if len(waiting) == 1 else []
    if len(chosen) != 1:
        listing = ", ".join(f"`{p.plan_hash[:12]}` ({p.command[:60]})" for p in waiting)
        await inv.reply(parts, conv.say("reply.plan.unknown", hash=named or "?", waiting=listing))
        return
    pending = chosen[0]
    if pending.head_sha.lower() != pull.head_sha.lower():
        await store.decide_plan(pending.id, "superseded", conv.actor, now=parts.core.now())
        await inv.reply(parts, conv.say("reply.plan.stale", hash=pending.plan_hash[:12], old=pending.head_sha[:7],
                                        new=pull.head_sha[:7]))
        return
    try:
        planned = [planned_from_dict(d) for d in pending.jobs]
    except (SpecError, KeyError, TypeError) as exc:
        raise SpecError(f"plan {pending.plan_hash[:12]} cannot be read back ({exc}); comment the command again") \
            from None
    if plan_hash(planned, pending.head_sha) != pending.plan_hash:
        raise SpecError(f"plan {pending.plan_hash[:12]} no longer matches its content hash: nothing was started")
    if not await store.decide_plan(pending.id, "approved", conv.actor, now=parts.core.now()):
        return  # approved a moment ago by someone else: that approval started it
    await inv.reply(parts, conv.say("reply.plan.approved", actor=conv.actor, hash=pending.plan_hash[:12],
                                    requester=pending.requester, command=pending.command))
    parsed = parse_command(pending.command, catalog=parts.core.catalog, policy=conv.policy)
    cmd = parsed if isinstance(parsed, Command) else Command("train", line=pending.command)
    # The runs are the requester's (their quota, their `/cancel`); the approval is recorded on the plan.
    requester = replace(conv, actor=pending.requester)
    for j, pj in enumerate(planned):
        await parts.jobs.launch(requester, pull, cmd, pj, f"{inv.key}.{j}")
