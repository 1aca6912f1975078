"""`/status`, `/cancel`, `/retry`, `/resume`: the verbs about runs that already exist (the run named, or this PR's
latest)."""

from __future__ import annotations

from bot.store import Run
from commands.jobspec import SpecError, job_from_dict
from commands.recipe import data_identity
from commands.render import render_run_card, render_status_list
from commands.render.github import render_provenance

from .base import Invocation, Parts, handles

RETRYABLE = ("failed", "cancelled")
TRAINS = ("train", "train+eval")


@handles("status")
async def status(parts: Parts, inv: Invocation) -> None:
    conv, named = inv.conv, inv.cmd.get("run")
    if named:
        if inv.target is None:
            await inv.reply(parts, conv.say("reply.status.unknown", run=named))
            return
        card = render_run_card(await parts.cards.view(inv.target), conv.language, sticky=False)
        await inv.reply(parts, card + "\n\n" + await _provenance(parts, inv.target, conv.language))
        return
    runs = await parts.core.store.runs_for_pr(conv.repo, conv.number)
    views = [await parts.cards.view(r) for r in runs]
    await inv.reply(parts, render_status_list(views, conv.language))


async def _provenance(parts: Parts, run: Run, language: str) -> str:
    """The run's recipe, its datasets' identities, its result keys and adapter hashes (`/status <run>`)."""
    datasets: list[tuple[str, str]] = []
    input_adapter = None
    try:
        job = job_from_dict(run.job_spec) if run.job_spec else None
    except SpecError:
        job = None
    if job is not None:
        datasets = [(d.name, data_identity(d, job.sha).label()) for d in job.datasets]
        input_adapter = job.adapter.sha256 if job.adapter is not None else None
    trains = run.kind in ("train", "train+eval")
    return render_provenance(language, recipe_key=run.result_key if trains else None, datasets=datasets,
                             # Where its results are stored (a served run scored natively is keyed natively), else
                             # where they will be.
                             eval_keys=await parts.core.store.result_keys(run.run_id) or dict(run.benchmark_keys or {}),
                             adapter_sha256=await parts.jobs.adapter_sha256(run.run_id) if trains else None,
                             input_adapter=input_adapter,
                             resolved=await parts.jobs.resolved_inputs(run.run_id))


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
    checkpoint = await parts.jobs.checkpoints.latest(target) if target.kind in TRAINS else None
    if checkpoint is not None:
        await inv.reply(parts, conv.say("reply.cancel.checkpoint", run=target.run_id, step=checkpoint.step))
    else:
        await inv.reply(parts, conv.say("reply.cancelling", run=target.run_id))


@handles("resume")
async def resume(parts: Parts, inv: Invocation) -> None:
    """Continue a stopped training run from its last uploaded checkpoint (ms-swift restores the step count)."""
    conv, target, named = inv.conv, inv.target, inv.cmd.get("run")
    if target is None or not target.job_spec:
        text = conv.say("reply.resume.unknown", run=named) if named else conv.say("reply.resume.none")
        await inv.reply(parts, text)
        return
    if target.kind not in TRAINS:
        await inv.reply(parts, conv.say("reply.resume.not_training", run=target.run_id))
        return
    if target.state not in RETRYABLE:
        await inv.reply(parts, conv.say("reply.resume.not_ended", run=target.run_id,
                                        state=conv.say(f"state.{target.state}")))
        return
    checkpoint = await parts.jobs.checkpoints.latest(target)
    if checkpoint is None:
        await inv.reply(parts, conv.say("reply.resume.no_checkpoint", run=target.run_id))
        return
    run, _ = await parts.jobs.resume(target, checkpoint, actor=conv.actor, line=inv.cmd.line or inv.cmd.render(),
                                     trigger_key=f"{conv.trigger}:{inv.key}")
    await inv.reply(parts, conv.say("reply.resume.started", run=target.run_id, step=checkpoint.step,
                                    new=run.run_id))


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
