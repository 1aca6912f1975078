"""`/ok-to-train`: a maintainer approves an untrusted (fork) PR at the head commit they reviewed."""

from __future__ import annotations

from commands import authz

from .base import Invocation, Parts, handles


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
