"""Turns planned jobs into runs: reuse a stored result when the same evaluation already ran, otherwise record the run
and queue its signed workflow dispatch, run card and check run."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from bot.cards import Cards
from bot.checkpoints import Checkpoint, Checkpoints
from bot.core import Conversation, Core
from bot.github.port import RUN_NAME_INPUT, PullInfo
from bot.store import NewRun, Run
from bot.store.models import OutboxItem
from commands.decision import Command
from commands.events import sign_body
from commands.jobspec import Callback, JobSpec, ResumeRef, SpecError, job_from_dict, job_to_json, to_dict
from commands.plan import PlanError, PlannedJob, PRFacts, TrainedRun
from commands.policy import Policy
from commands.render.i18n import t
from commands.results import BenchmarkResult, Results


@dataclass(frozen=True)
class Reused:
    """An evaluation answered from the store: every benchmark's result key was already stored."""

    run_id: str  # the run whose stored results answer it (the first benchmark's)
    results: Results
    source: Run | None


class Jobs:
    def __init__(self, core: Core, cards: Cards) -> None:
        self.core = core
        self.cards = cards
        self.checkpoints = Checkpoints(core)

    async def pr_facts(self, repo: str, number: int, pull: PullInfo) -> PRFacts:
        runs = await self.core.store.runs_for_pr(repo, number)
        trained = {r.run_id: TrainedRun(r.run_id, r.model or "", r.result_key or "") for r in runs
                   if r.state == "succeeded" and r.kind in ("train", "train+eval")}
        latest_train = next((r.run_id for r in runs if r.run_id in trained), None)
        latest_benchmarks: tuple[str, ...] = ()
        for r in runs:
            spec = r.job_spec or {}
            if spec.get("benchmarks"):
                latest_benchmarks = tuple(b["name"] for b in spec["benchmarks"])
                break
        return PRFacts(repo=repo, head_sha=pull.head_sha, base_ref=pull.base_ref, number=number,
                       latest_train_run=latest_train, trained_runs=trained, latest_benchmarks=latest_benchmarks)

    async def stored(self, repo: str, keys: Mapping[str, str]) -> Reused | None:
        """The stored results for every one of these result keys, or None if any is missing."""
        found: dict[str, tuple[str, BenchmarkResult]] = {}
        for bench, key in keys.items():
            hit = await self.core.store.find_result(repo, key)
            if hit is None:
                return None
            found[bench] = hit
        if not found:
            return None
        first_run = next(iter(found.values()))[0]
        results = Results(run_id=first_run, status="succeeded", benchmarks={b: r for b, (_, r) in found.items()})
        return Reused(first_run, results, await self.core.store.get_run(first_run))

    async def launch(self, conv: Conversation, pull: PullInfo, cmd: Command, pj: PlannedJob, key: str, *,
                     backfill_for: str | None = None) -> Run | Reused:
        """Start one planned job, or answer it from the store (an identical eval that already ran, unless forced)."""
        job = pj.job
        if job.kind == "eval" and not pj.force and pj.benchmark_keys:
            reused = await self.stored(conv.repo, pj.benchmark_keys)
            if reused is not None:
                return reused
        if job.adapter is not None and job.adapter.workflow_run_id is None:
            # On a GitHub runner the adapter exists only as the training run's artifact: name the workflow run that
            # holds it, so the dispatched workflow can download it (local mode fills adapter.path instead).
            source = await self.core.store.get_run(job.adapter.run_id)
            if source is None or source.repo != conv.repo:
                # Never another repository's run: its artifact is not this repository's to read.
                raise PlanError(f"this repository has no run `{job.adapter.run_id}` to take an adapter from")
            if source.workflow_run_id is not None:
                job = replace(job, adapter=replace(job.adapter, workflow_run_id=source.workflow_run_id))
        if job.adapter is not None and job.adapter.sha256 is None:
            # Provenance: the hash the training run reported for the adapter it saved rides in the signed job; the
            # runner refuses an artifact whose files no longer hash to it.
            digest = await self.adapter_sha256(job.adapter.run_id)
            if digest is not None:
                job = replace(job, adapter=replace(job.adapter, sha256=digest))
        keys = dict(pj.benchmark_keys) if job.evaluates or pj.compare_ref else None
        new = NewRun(run_id=job.run_id, repo=conv.repo, actor=conv.actor, command=cmd.line or cmd.render(),
                     kind=job.kind, run_token=secrets.token_urlsafe(32), number=conv.number, head_sha=job.sha,
                     model=job.model.name, job_spec=to_dict(job), result_key=pj.result_key, name_token=job.run_id,
                     trigger_key=f"{conv.trigger}:{key}", compare_ref=pj.compare_ref or None,
                     benchmark_keys=keys, backfill_for=backfill_for)
        run, created = await self.core.store.create_run(new, now=self.core.now())
        if created:
            await self.dispatch(run, job)
        elif run.state == "queued" and run.job_spec:
            # The same trigger again before its dispatch was queued (a crash in between): finish the job. Queuing
            # is idempotent by key; a run past `queued` was dispatched and is never dispatched twice.
            await self.dispatch(run, job_from_dict(run.job_spec))
        return run

    async def adapter_sha256(self, run_id: str) -> str | None:
        """The sha256 (over its files) of the adapter run `run_id` saved, as its signed `artifact` event said."""
        for ev in reversed(await self.core.store.events_after(run_id, -1)):
            if ev.type == "artifact" and ev.data.get("name") == "adapter" and isinstance(ev.data.get("sha256"), str):
                return str(ev.data["sha256"])
        return None

    async def retry(self, conv: Conversation, target: Run, line: str, key: str) -> Run:
        """Run `target`'s job again, unchanged, under a new run id (same intent: compare, keys, backfill)."""
        run_id = self.core.new_run_id()
        job = replace(job_from_dict(target.job_spec or {}), run_id=run_id, callback=None)
        new = NewRun(run_id=run_id, repo=target.repo, actor=conv.actor, command=line, kind=job.kind,
                     run_token=secrets.token_urlsafe(32), number=target.number, head_sha=job.sha,
                     model=target.model, job_spec=to_dict(job), result_key=target.result_key, name_token=run_id,
                     trigger_key=f"{conv.trigger}:{key}", retry_of=target.run_id, compare_ref=target.compare_ref,
                     benchmark_keys=target.benchmark_keys, backfill_for=target.backfill_for)
        run, _ = await self.core.store.create_run(new, now=self.core.now())
        await self.dispatch(run, job)
        return run

    async def resume(self, target: Run, checkpoint: Checkpoint, *, actor: str, line: str, trigger_key: str,
                     auto: bool = False) -> tuple[Run, bool]:
        """Train `target`'s job again from `checkpoint` (same recipe, same result key), under a new run id; the
        step count goes on from the checkpoint's. `trigger_key` makes it idempotent (an automatic resume: once)."""
        run_id = self.core.new_run_id()
        job = replace(job_from_dict(target.job_spec or {}), run_id=run_id, callback=None, not_after=None,
                      resume=ResumeRef(run_id=checkpoint.run_id, step=checkpoint.step, sha256=checkpoint.sha256,
                                       auto=auto))
        new = NewRun(run_id=run_id, repo=target.repo, actor=actor, command=line, kind=job.kind,
                     run_token=secrets.token_urlsafe(32), number=target.number, head_sha=job.sha,
                     model=target.model, job_spec=to_dict(job), result_key=target.result_key, name_token=run_id,
                     trigger_key=trigger_key, retry_of=target.run_id, compare_ref=target.compare_ref,
                     benchmark_keys=target.benchmark_keys, backfill_for=target.backfill_for)
        run, created = await self.core.store.create_run(new, now=self.core.now())
        if created:
            await self.dispatch(run, job_from_dict(run.job_spec or {}))
        return run, created

    async def resume_lost(self, run: Run) -> None:
        """A training run whose runner died (the workflow ended, the agent never said how): resume it once,
        automatically, from the checkpoint it uploaded, if it has one and is not itself an automatic resume."""
        if run.kind not in ("train", "train+eval") or not run.job_spec:
            return
        try:
            job = job_from_dict(run.job_spec)
        except SpecError:
            return
        if job.resume is not None and job.resume.auto:
            return  # once: a resumed run that dies too stays failed (`/resume` can still continue it)
        checkpoint = await self.checkpoints.latest(run)
        if checkpoint is None:
            return
        resumed, created = await self.resume(run, checkpoint, actor=run.actor,
                                             line=f"(automatic) /resume {run.run_id}",
                                             trigger_key=f"auto-resume:{run.run_id}", auto=True)
        if created and run.number is not None:
            language = await self.core.language_for(run.repo)
            body = t(language, "reply.resume.auto", run=run.run_id, step=checkpoint.step, new=resumed.run_id)
            await self.core.write(f"auto-resume:{run.run_id}", "comment_create",
                                  {"repo": run.repo, "number": run.number, "body": body})

    async def dispatch(self, run: Run, job: JobSpec) -> None:
        """Queue the workflow dispatch, the sticky run card and the check run (all through the outbox)."""
        config = self.core.config
        callback = f"{config.public_url.rstrip('/')}/api/runs/{run.run_id}/events"
        # not_after: runners refuse the signed job after the configured TTL (it must not be replayable forever).
        job = replace(job, callback=Callback(url=callback, token=run.run_token),
                      not_after=round(self.core.now().timestamp() + config.job_ttl_s, 3))
        job_json = job_to_json(job)
        # The inputs of deploy/github/tunebot-run.yml; RUN_NAME_INPUT (run_id) also names the workflow run.
        inputs = {
            RUN_NAME_INPUT: run.run_id,
            "job": job_json,
            "job_sig": sign_body(config.job_signing_key.get(), job_json.encode("utf-8")),
            "sha": job.sha,
            "callback_url": callback,
        }
        if job.resources is not None and job.resources.world_size > 1:
            # A multi-GPU job goes to a runner with that many GPUs: the policy's labels for its GPU count
            # (deploy/github/tunebot-run.yml takes `runs_on` over the repository's default labels).
            policy = await self.core.policy_for(run.repo)
            labels = policy.runners.runs_on(job.resources.gpus) if isinstance(policy, Policy) else None
            if labels:
                inputs["runs_on"] = json.dumps(list(labels))
        # The workflow file comes from the default branch: dispatching on the PR branch would run a workflow the
        # PR author wrote, with the repository's secrets (platform-facts: workflow_dispatch).
        ref = await self.core.github.default_branch(run.repo)
        now = self.core.now()
        await self.core.store.enqueue(f"dispatch:{run.run_id}", "dispatch",
                                      {"repo": run.repo, "workflow": config.workflow_file, "ref": ref,
                                       "inputs": inputs, "decided_at": now.isoformat(), "run_id": run.run_id},
                                      now, run_id=run.run_id)
        await self.cards.create(run)
        if self.core.chat is not None:
            await self.core.chat.run_changed(run, await self.cards.view(run), final=False)
        await self.core.flush_writes()

    async def on_outbox_done(self, item: OutboxItem, result: Mapping[str, Any]) -> None:
        """What a performed write tells us about its run: the workflow run it started, the card's comment id."""
        if item.run_id is None:
            return
        store, now = self.core.store, self.core.now()
        if item.kind == "dispatch":
            await store.update_run(item.run_id, now=now, workflow_run_id=result.get("workflow_run_id"),
                                   workflow_url=result.get("html_url"))
            await store.advance_run(item.run_id, "dispatched", now=now)
        elif item.kind == "comment_create" and item.payload.get("purpose") == "card":
            await store.update_run(item.run_id, now=now, comment_id=int(result["comment_id"]))
        elif item.kind == "check_create":
            await store.update_run(item.run_id, now=now, check_run_id=int(result["check_run_id"]))
