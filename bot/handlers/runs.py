"""`/status`, `/cancel`, `/retry`: the verbs about runs that already exist (the run named, or this PR's latest)."""

from __future__ import annotations

from commands.render import render_run_card, render_status_list

from .base import Invocation, Parts, handles

RETRYABLE = ("failed", "cancelled")


@handles("status")
async def status(parts: Parts, inv: Invocation) -> None:
    conv, named = inv.conv, inv.cmd.get("run")
    if named:
        if inv.target is None:
            await inv.reply(parts, conv.say("reply.status.unknown", run=named))
            return
        await inv.reply(parts, render_run_card(await parts.cards.view(inv.target), conv.language,
                                                       sticky=False))
        return
    runs = await parts.core.store.runs_for_pr(conv.repo, conv.number)
    views = [await parts.cards.view(r) for r in runs]
    await inv.reply(parts, render_status_list(views, conv.language))


@handles("cancel")
async def cancel(parts: Parts, inv: Invocation) -> None:
    conv, target, named = inv.conv, inv.target, inv.cmd.get("run")
    if target is None:
        text = conv.say("reply.cancel.unknown", run=named) if named else conv.say("reply.cancel.none")
        await inv.reply(parts, text)
        return
    if target.finished:
        await inv.reply(parts, conv.say("reply.cancel.none_named", run=target.run_id,
                                        state=conv.say(f"state.{target.state}")))
        return
    await parts.lifecycle.cancel(target, f"cancelled by @{conv.actor}")
    await inv.reply(parts, conv.say("reply.cancelling", run=target.run_id))


@handles("retry")
async def retry(parts: Parts, inv: Invocation) -> None:
    conv, target, named = inv.conv, inv.target, inv.cmd.get("run")
    if target is None or not target.job_spec:
        text = conv.say("reply.retry.unknown", run=named) if named else conv.say("reply.retry.none")
        await inv.reply(parts, text)
        return
    if target.state not in RETRYABLE:
        # Retrying a run that succeeded or is still going would pay twice for the same answer.
        await inv.reply(parts, conv.say("reply.retry.not_ended", run=target.run_id,
                                        state=conv.say(f"state.{target.state}")))
        return
    await parts.jobs.retry(conv, target, inv.cmd.line or inv.cmd.render(), inv.key)
