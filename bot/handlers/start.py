"""`/train`, `/eval`, `/compare`: plan the jobs the command means and start them (or answer from the store)."""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.github.port import GitHubError
from bot.jobs import Reused
from commands.baseline import parse_target
from commands.plan import PlanError, local_dataset_paths, local_question_dirs, plan

from .base import Invocation, Parts, handles

log = logging.getLogger(__name__)


@handles("train", "eval", "compare")
async def start_jobs(parts: Parts, inv: Invocation) -> None:
    conv, pull, cmd = inv.conv, inv.pull, inv.cmd
    if pull is None:
        await inv.reply(parts, conv.say("reply.pr_only", verb=cmd.verb))
        return
    pr = await parts.jobs.pr_facts(conv.repo, conv.number, pull)
    compare_ref: str | None = None
    if cmd.verb == "compare":
        # Decided before anything starts: a ref that names no commit gets its answer and no dispatch.
        compare_ref = await _compare_target(parts, inv, pr.latest_train_run is not None)
    planned = plan(cmd, pr, conv.policy, parts.core.catalog, iter(parts.core.new_run_id, None))
    paths = local_dataset_paths(planned)
    folders = local_question_dirs(planned)
    if paths or folders:
        # A recipe names its repository data by content (git blob at the head commit), and the repository's own
        # questions by their files' blobs too, so equal files, equal keys, whichever commit they are at.
        try:
            blobs = await parts.core.github.blob_shas(conv.repo, paths, pull.head_sha) if paths else {}
            listings = {f: await parts.core.github.folder_blobs(conv.repo, f, pull.head_sha) for f in folders}
        except GitHubError as exc:
            log.warning("blob SHAs of %s at %s: %s (keying on the commit instead)", paths + folders, pull.head_sha,
                        exc)
        else:
            pr = replace(pr, blobs=blobs, question_dirs={f: v for f, v in listings.items() if v is not None})
            planned = plan(cmd, pr, conv.policy, parts.core.catalog, iter([pj.job.run_id for pj in planned]))
    if compare_ref is not None:
        # `seeds=N` is kept with the run: when its evaluation lands, the comparison judges N seeds per side.
        seeds = cmd.args.get("seeds")
        planned = [replace(pj, compare_ref=compare_ref, compare_seeds=seeds if isinstance(seeds, int) else None)
                   for pj in planned]
    for j, pj in enumerate(planned):
        key = f"{inv.key}.{j}"
        started = await parts.jobs.launch(conv, pull, cmd, pj, key)
        if isinstance(started, Reused):
            seeds = cmd.args.get("seeds")
            await parts.comparisons.answer_reused(conv, pull, pj, started, key,
                                                  seeds if isinstance(seeds, int) else None)


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
