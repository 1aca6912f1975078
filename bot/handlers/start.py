"""`/train`, `/eval`, `/compare`, `/plan`: plan the jobs the command means and start them (or answer from the store),
show their plan and cost instead (`/plan`, `plan=true`), or keep a costly /train for `/approve`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bot.core import Conversation
from bot.github.port import GitHubError, PullInfo
from bot.jobs import Reused
from commands.baseline import parse_target
from commands.costplan import cost_plan, render_plan
from commands.jobspec import job_from_dict, to_dict
from commands.parse import parse_command
from commands.plan import PlanError, PlannedJob, local_dataset_paths, plan

from .base import Invocation, Parts, handles

log = logging.getLogger(__name__)


@handles("train", "eval", "compare", "plan")
async def start_jobs(parts: Parts, inv: Invocation) -> None:
    conv, pull, cmd = inv.conv, inv.pull, inv.cmd
    if pull is None:
        await inv.reply(parts, conv.say("reply.pr_only", verb=cmd.verb))
        return
    planning = cmd.verb == "plan" or cmd.get("plan") is True
    if cmd.verb == "plan":
        # The parser validated the inner command and kept its canonical text: plan exactly that.
        inner = parse_command(str(cmd.get("command", "")), catalog=parts.core.catalog, policy=conv.policy)
        if isinstance(inner, str):
            raise PlanError(inner)
        cmd = inner
        inv = replace(inv, cmd=inner)
    pr = await parts.jobs.pr_facts(conv.repo, conv.number, pull)
    compare_ref: str | None = None
    if cmd.verb == "compare":
        # Decided before anything starts: a ref that names no commit gets its answer and no dispatch.
        compare_ref = await _compare_target(parts, inv, pr.latest_train_run is not None)
    planned = plan(cmd, pr, conv.policy, parts.core.catalog, iter(parts.core.new_run_id, None))
    paths = local_dataset_paths(planned)
    if paths:
        # A recipe names its repository data by content (git blob at the head commit), so equal data, equal key.
        try:
            blobs = await parts.core.github.blob_shas(conv.repo, paths, pull.head_sha)
        except GitHubError as exc:
            log.warning("blob SHAs of %s at %s: %s (keying on the commit instead)", paths, pull.head_sha, exc)
        else:
            pr = replace(pr, blobs=blobs)
            planned = plan(cmd, pr, conv.policy, parts.core.catalog, iter([pj.job.run_id for pj in planned]))
    if compare_ref is not None:
        planned = [replace(pj, compare_ref=compare_ref) for pj in planned]
    shown = inv.cmd.render() if inv.cmd.verb != "train" or not planning else \
        replace(inv.cmd, args={k: v for k, v in inv.cmd.args.items() if k != "plan"}).render()
    if planning:
        ahead = sum(1 for r in await parts.core.store.active_runs() if r.repo == conv.repo)
        cp = cost_plan(planned, pull.head_sha, conv.policy, parts.core.catalog, queue_ahead=ahead)
        await inv.reply(parts, render_plan(cp, shown, conv.language, conv.policy))
        return
    if cmd.verb == "train" and await held_for_approval(parts, conv, pull, planned, cmd.line or shown, shown, inv.key):
        return
    for j, pj in enumerate(planned):
        key = f"{inv.key}.{j}"
        started = await parts.jobs.launch(conv, pull, cmd, pj, key)
        if isinstance(started, Reused):
            seeds = cmd.args.get("seeds")
            await parts.comparisons.answer_reused(conv, pull, pj, started, key,
                                                  seeds if isinstance(seeds, int) else None)


async def held_for_approval(parts: Parts, conv: Conversation, pull: PullInfo, planned: list[PlannedJob],
                            line: str, shown: str, key: str) -> bool:
    """Whether these training jobs wait for `/approve` (`approval.above_gpu_hours`): if so the plan is kept exactly
    as planned (run ids, result keys, head commit, content hash) and the reply says who may start it, and how."""
    if conv.policy.approval_above_gpu_hours is None:
        return False
    ahead = sum(1 for r in await parts.core.store.active_runs() if r.repo == conv.repo)
    cp = cost_plan(planned, pull.head_sha, conv.policy, parts.core.catalog, queue_ahead=ahead)
    if not cp.needs_approval:
        return False
    await parts.core.store.add_plan(conv.repo, conv.number, pull.head_sha, cp.plan_hash, conv.actor, line,
                                    [planned_to_dict(pj) for pj in planned], cp.approval_reason,
                                    now=parts.core.now())
    await parts.core.reply(conv, key, conv.say("reply.plan.waiting", actor=conv.actor, command=shown,
                                               reason=cp.approval_reason, level=conv.policy.min_permission_approve,
                                               hash=cp.plan_hash[:12], sha=pull.head_sha[:7])
                           + "\n\n" + render_plan(cp, shown, conv.language, conv.policy))
    return True


def planned_to_dict(pj: PlannedJob) -> dict[str, Any]:
    return {"job": to_dict(pj.job), "result_key": pj.result_key, "benchmark_keys": dict(pj.benchmark_keys),
            "force": pj.force, "compare_ref": pj.compare_ref}


def planned_from_dict(data: Mapping[str, Any]) -> PlannedJob:
    return PlannedJob(job=job_from_dict(data["job"]), result_key=str(data["result_key"]),
                      benchmark_keys=dict(data.get("benchmark_keys") or {}), force=bool(data.get("force")),
                      compare_ref=data.get("compare_ref"))


async def _compare_target(parts: Parts, inv: Invocation, trained: bool) -> str:
    """What `/compare` compares with, pinned: `name@sha` for a ref, a run id, or `base-model`."""
    conv, pull, cmd = inv.conv, inv.pull, inv.cmd
    assert pull is not None
    text = cmd.args.get("ref")
    text = text if isinstance(text, str) else None
    known = await parts.core.store.get_run(text[4:] if text and text.lower().startswith("run:") else text) \
        if text else None
    target = parse_target(text, pull.base_ref, known_run=known is not None and known.repo == conv.repo)
    if target.kind == "run" and (known is None or known.repo != conv.repo):
        raise PlanError(f"this repository has no run `{target.value}` to compare with")
    if target.kind != "ref":
        return target.value
    sha = await parts.core.github.resolve_commit(conv.repo, target.value)
    if sha is None:
        raise PlanError(f"`{target.value}` is not a branch, tag or commit of {conv.repo}: nothing was started")
    if not trained:
        raise PlanError(f"nothing trained on this PR to compare with {target.value}@{sha[:7]}: `/train …` first "
                        "(the same recipe is then trained at that commit), or `/compare base-model`")
    return f"{target.value}@{sha}"
