"""Decides what a run's results are compared with and posts the comparison (PR report, check run, card, chat); a
missing baseline is evaluated first (backfilled) and compared when it lands."""

from __future__ import annotations

import asyncio
import logging

from bot.cards import Cards
from bot.core import Conversation, Core
from bot.github.port import PullInfo
from bot.jobs import Jobs, Reused
from bot.store import Run
from commands.compare import CompareError, Comparison, Conclusion, compare_results, decide
from commands.decision import Command
from commands.jobspec import JobSpec, SpecError, job_from_dict
from commands.plan import PlanError, PlannedJob, PRFacts, plan_baseline
from commands.policy import DEFAULT_POLICY, Policy
from commands.render import ReportLinks, ScoreView, render_cached_reply, render_comparison
from commands.results import Results

log = logging.getLogger(__name__)


class Comparisons:
    def __init__(self, core: Core, cards: Cards, jobs: Jobs) -> None:
        self.core = core
        self.cards = cards
        self.jobs = jobs

    async def answer_reused(self, conv: Conversation, pull: PullInfo, pj: PlannedJob, reused: Reused,
                            key: str) -> None:
        """An evaluation the store already answers: say so with its scores, and compare if that was asked."""
        source = reused.source
        scores = {b: ScoreView(score=r.score, n=r.n) for b, r in reused.results.benchmarks.items()}
        text = render_cached_reply(reused.run_id, source.head_sha or "" if source else "", conv.language,
                                   run_url=source.workflow_url if source else None, scores=scores)
        await self.core.reply(conv, f"cached:{key}", text)
        if pj.compare_ref:
            await self.compare_with_baseline(conv.repo, conv.number, reused.results, pj.job, reused.run_id,
                                             base_ref=pj.compare_ref, explicit=True, policy=conv.policy, pull=pull)

    async def compare_with_baseline(self, repo: str, number: int | None, new: Results, job: JobSpec,
                                    new_run_id: str, *, base_ref: str, explicit: bool, policy: Policy,
                                    pull: PullInfo | None = None) -> bool:
        """Post the comparison of `new` against the base model's stored results for the same eval config; if none
        is stored and the user asked for the comparison, dispatch that baseline eval (backfill) and compare when it
        finishes. Returns True when a comparison was posted now."""
        store = self.core.store
        if base_ref.startswith("tb-") and base_ref != new_run_id:
            # `/compare <run-id>`: that run's stored results are the reference, question by question.
            other = await store.get_run(base_ref)
            stored_other = await store.load_results(base_ref) if other and other.repo == repo else None
            if stored_other is None or not stored_other.benchmarks:
                raise PlanError(f"run `{base_ref}` has no stored evaluation results in {repo} to compare with")
            await self.post(repo, number, new_run_id, stored_other, new, policy, base_ref)
            return True
        pr = PRFacts(repo=repo, head_sha=job.sha, base_ref=base_ref, number=number)
        base_pj = plan_baseline(job, pr, self.core.catalog, self.core.new_run_id())
        stored = await self.jobs.stored(repo, base_pj.benchmark_keys)
        if stored is not None:
            await self.post(repo, number, new_run_id, stored.results, new, policy, base_ref)
            return True
        if not explicit or number is None:
            return False
        if pull is None:
            pull = await self.core.github.get_pull(repo, number)
        run = await store.get_run(new_run_id)
        conv = Conversation(repo, number, True, run.actor if run else self.core.bot_login, "OWNER",
                            f"backfill:{new_run_id}", policy)
        cmd = Command("eval", {}, line=f"/eval {' '.join(new.benchmarks)} (baseline for {new_run_id})")
        started = await self.jobs.launch(conv, pull, cmd, base_pj, "baseline", backfill_for=new_run_id)
        if isinstance(started, Reused):  # stored in the meantime (another PR's backfill landed): compare now
            origin = await store.get_run(new_run_id)
            return origin is not None and await self.compare_finished(origin, baseline_run=started.run_id)
        return False

    async def compare_finished(self, run: Run, baseline_run: str | None = None) -> bool:
        """After a run's evaluation: compare it (explicitly asked, auto when a baseline exists, or a backfill)."""
        store = self.core.store
        if run.backfill_for is not None and baseline_run is None:
            origin = await store.get_run(run.backfill_for)
            if origin is None:
                return False
            await self.cards.finished(run)
            return await self.compare_finished(origin, baseline_run=run.run_id)
        results = await store.load_results(run.run_id)
        if results is None or not results.benchmarks or run.job_spec is None:
            return False
        policy = await self.core.policy_for(run.repo)
        policy = policy if isinstance(policy, Policy) else DEFAULT_POLICY
        job = job_from_dict(run.job_spec)
        # An adapter evaluated on a PR is a change someone wants measured: compare it with the base model, running
        # the baseline eval if none is stored (it is content-addressed, so every later PR reuses it). A base-model
        # eval is itself a baseline and is only compared when asked.
        wants = run.compare_ref is not None or job.adapter is not None or job.kind == "train+eval"
        try:
            return await self.compare_with_baseline(run.repo, run.number, results, job, run.run_id,
                                                    base_ref=run.compare_ref or "main",
                                                    explicit=wants and baseline_run is None, policy=policy)
        except (PlanError, CompareError, SpecError) as exc:
            log.warning("comparison for %s failed: %s", run.run_id, exc)
            return False

    async def post(self, repo: str, number: int | None, run_id: str, base: Results, new: Results, policy: Policy,
                   base_ref: str) -> None:
        # ~1 s for a full CMMLU + C-Eval bootstrap: keep it off the event loop.
        comparison: Comparison = await asyncio.to_thread(compare_results, base, new)
        conclusion: Conclusion = decide(comparison, policy.regression)
        run = await self.core.store.get_run(run_id)
        links = ReportLinks(actions_url=run.workflow_url if run else None)
        parts = render_comparison(comparison, conclusion, policy.language, links, key=run_id)
        if number is not None:
            for i, body in enumerate(parts, start=1):
                # Keyed by the moment it was decided; the remembered (subject, part) makes a repeat edit the earlier
                # report in place instead of posting a second copy.
                await self.core.write(f"compare:{run_id}:{base.run_id}:{i}:{self.core.clock():.6f}",
                                      "comment_create",
                                      {"repo": repo, "number": number, "body": body, "subject": f"compare:{run_id}",
                                       "purpose": f"part{i}", "marker": f"tunebot:compare:{run_id}"}, run_id=run_id)
        if run is not None:
            baseline = {b: ScoreView(score=r.score, n=r.n) for b, r in base.benchmarks.items()}
            await self.cards.complete_check(run, comparison=comparison, conclusion=conclusion)
            await self.cards.refresh(run_id, final=True, baseline=baseline, baseline_label=base_ref)
            if self.core.chat is not None:
                await self.core.chat.comparison(run, comparison, conclusion, policy)
