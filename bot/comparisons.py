"""Decides what a run's results are compared with and posts the comparison (PR report, check run, card, chat); a
missing baseline is evaluated first (backfilled) and compared when it lands."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace

from bot.cards import Cards
from bot.core import Conversation, Core
from bot.github.port import PullInfo
from bot.jobs import Jobs, Reused
from bot.store import Run
from commands.baseline import (
    BASE_MODEL,
    Baseline,
    NoBaseline,
    ResolvedRef,
    SameRecipe,
    UseStored,
    decide_baseline,
    parse_target,
)
from commands.compare import CompareError, Comparison, Conclusion, compare_results, decide
from commands.decision import Command
from commands.jobspec import JobSpec, SpecError, job_from_dict
from commands.plan import PlanError, PlannedJob, PRFacts, plan_baseline, plan_recipe_baseline
from commands.policy import DEFAULT_POLICY, Policy
from commands.recipe import Change, recipe_diff, recipe_of
from commands.render import ReportLinks, ScoreView, render_cached_reply, render_comparison
from commands.render.fmt import code as fmt_code
from commands.render.github import compare_marker
from commands.render.i18n import t
from commands.results import Results, results_from_events

log = logging.getLogger(__name__)

_FULL_SHA = re.compile(r"[0-9a-f]{40}")


def _slug(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ref)[:60]


@dataclass(frozen=True)
class CompareContext:
    """What a recipe comparison says besides the scores: both commits and what differed."""

    base_label: str
    base_sha: str
    new_sha: str
    changes: tuple[str, ...]


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
        """Compare `new` with what `base_ref` names (commands/baseline.py): a run, the untuned base model, or the
        same training recipe at a ref's commit (stored: compared now; not stored and asked for: backfilled, and
        compared when it lands). Returns True when a report (comparison or "same recipe") was posted now."""
        store = self.core.store
        known = await store.get_run(base_ref) if base_ref != new_run_id and "@" not in base_ref else None
        target = parse_target(base_ref, "main", known_run=known is not None and known.repo == repo)
        if target.kind == "run":
            # `/compare <run-id>`: that run's stored results are the reference, question by question.
            other = await store.get_run(target.value)
            stored_other = await store.load_results(target.value) if other and other.repo == repo else None
            if stored_other is None or not stored_other.benchmarks:
                raise PlanError(f"run `{target.value}` has no stored evaluation results in {repo} to compare with")
            await self.post(repo, number, new_run_id, stored_other, new, policy, target.value)
            return True
        if target.kind == "ref":
            return await self._compare_recipe(repo, number, new, job, new_run_id, target.value, explicit=explicit,
                                              policy=policy, pull=pull)
        return await self._compare_base_model(repo, number, new, job, new_run_id, explicit=explicit, policy=policy,
                                              pull=pull)

    async def _compare_base_model(self, repo: str, number: int | None, new: Results, job: JobSpec,
                                  new_run_id: str, *, explicit: bool, policy: Policy,
                                  pull: PullInfo | None = None) -> bool:
        """The untuned base model on the same questions (`/compare base-model`, and the automatic report after a
        PR's training): stored, or evaluated first (backfill) when asked."""
        store = self.core.store
        pr = PRFacts(repo=repo, head_sha=job.sha, base_ref=BASE_MODEL, number=number)
        base_pj = plan_baseline(job, pr, self.core.catalog, self.core.new_run_id())
        if new.benchmarks and set(new.benchmarks) <= set(new.base_benchmarks):
            # The run scored the base model itself, in the same served evaluation (job.eval_base): same questions,
            # same engine, one server start; no second run to wait for.
            base = Results(run_id=new_run_id, status="succeeded",
                           benchmarks={b: new.base_benchmarks[b] for b in new.benchmarks})
            await self.post(repo, number, new_run_id, base, new, policy, BASE_MODEL)
            return True
        stored = await self.jobs.stored(repo, base_pj.benchmark_keys)
        if stored is not None:
            await self.post(repo, number, new_run_id, stored.results, new, policy, BASE_MODEL)
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

    async def _head_training(self, repo: str, job: JobSpec) -> JobSpec | None:
        """The training job that made what `job` evaluated: itself, or the run its adapter came from."""
        if job.trains:
            return job
        if job.adapter is None:
            return None
        run = await self.core.store.get_run(job.adapter.run_id)
        if run is None or run.repo != repo or not run.job_spec:
            return None
        return job_from_dict(run.job_spec)

    async def resolve(self, repo: str, ref: str) -> ResolvedRef | None:
        """A ref the user wrote, as a commit (a ref pinned at `/compare` time, `name@sha`, stays that commit)."""
        name, _, sha = ref.partition("@")
        if sha and _FULL_SHA.fullmatch(sha):
            return ResolvedRef(name, sha)
        found = await self.core.github.resolve_commit(repo, ref)
        return ResolvedRef(ref, found) if found else None

    async def decide(self, repo: str, job: JobSpec, head_key: str, ref: ResolvedRef) -> Baseline:
        """Plan the head's recipe at the ref's commit and decide (commands/baseline.decide_baseline)."""
        head = await self._head_training(repo, job)
        if head is None:
            return NoBaseline("nothing trained to compare: this compares a trained adapter with the same recipe "
                              "at another commit; `/train …` first, or `/compare base-model`")
        paths = sorted({d.id for d in head.datasets if d.source == "local"})
        blobs = await self.core.github.blob_shas(repo, paths, ref.sha) if paths else {}
        try:
            planned: PlannedJob | str = plan_recipe_baseline(head, self.core.catalog, ref.sha, blobs,
                                                             self.core.new_run_id(), ref.name, job.benchmarks)
        except (PlanError, SpecError) as exc:
            planned = str(exc)
        stored: dict[str, str] = {}
        changes: tuple[Change, ...] = ()
        if isinstance(planned, PlannedJob):
            for key in planned.benchmark_keys.values():
                hit = await self.core.store.find_result(repo, key)
                if hit is not None:
                    stored[key] = hit[0]
            preset = self.core.catalog.models[head.model.name]
            changes = recipe_diff(recipe_of(planned.job, preset), recipe_of(head, preset))
        return decide_baseline(head_key, ref, planned, stored, changes)

    async def _compare_recipe(self, repo: str, number: int | None, new: Results, job: JobSpec, new_run_id: str,
                              ref_text: str, *, explicit: bool, policy: Policy, pull: PullInfo | None) -> bool:
        store = self.core.store
        ref = await self.resolve(repo, ref_text)
        if ref is None:
            raise PlanError(f"`{ref_text}` is not a branch, tag or commit of {repo}: nothing was started")
        head = await self._head_training(repo, job)
        head_run = await store.get_run(head.run_id) if head is not None else None
        head_key = (head_run.result_key if head_run is not None else None) or ""
        decision = await self.decide(repo, job, head_key, ref)
        key = f"{new_run_id}-vs-{_slug(ref.name)}"
        if isinstance(decision, NoBaseline):
            raise PlanError(decision.reason)
        if isinstance(decision, SameRecipe):
            if number is not None:
                text = t(policy.language, "cmp.same_recipe", ref=fmt_code(ref.label), head=fmt_code(job.sha[:7]),
                         recipe=fmt_code(head_key[:12]))
                await self.core.write(f"compare:{key}:same:{self.core.clock():.6f}", "comment_create",
                                      {"repo": repo, "number": number, "body": f"{compare_marker(key)}\n{text}",
                                       "subject": f"compare:{key}", "purpose": "part1",
                                       "marker": f"tunebot:compare:{key}"}, run_id=new_run_id)
            return True
        context = CompareContext(base_label=ref.label, base_sha=ref.sha, new_sha=job.sha,
                                 changes=tuple(c.text() for c in decision.changes))
        if isinstance(decision, UseStored):
            base = await store.load_results(decision.run_id)
            if base is None or not base.benchmarks:
                raise PlanError(f"the stored baseline `{decision.run_id}` has no results")
            await self.post(repo, number, new_run_id, base, new, policy, ref.label, context=context, key=key)
            return True
        if not explicit or number is None:
            return False
        if pull is None:
            pull = await self.core.github.get_pull(repo, number)
        origin = await store.get_run(new_run_id)
        # Pin the ref to the commit it named now, so the comparison made when the backfill lands is against it.
        await store.update_run(new_run_id, now=self.core.now(), compare_ref=f"{ref.name}@{ref.sha}")
        conv = Conversation(repo, number, True, origin.actor if origin else self.core.bot_login, "OWNER",
                            f"backfill:{new_run_id}:{ref.sha}", policy)
        cmd = Command("train", {}, line=f"/compare baseline {ref.label}: the recipe of {head.run_id if head else '?'}"
                                        f" at {ref.sha[:7]}")
        started = await self.jobs.launch(conv, pull, cmd, decision.planned, "baseline", backfill_for=new_run_id)
        if isinstance(started, Run):
            await self.core.reply(conv, f"baseline:{started.run_id}",
                                  t(policy.language, "cmp.backfill", ref=fmt_code(ref.label),
                                    run=fmt_code(started.run_id), new=fmt_code(new_run_id),
                                    changes="".join(f"\n- {fmt_code(c.text())}" for c in decision.changes)))
            await self.cards.refresh(new_run_id, final=True,
                                     baseline_label=t(policy.language, "cmp.baseline_training", ref=ref.label))
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
        if job.eval_base:
            # The base model's scores from the same served evaluation live in the run's events (model="base"),
            # not in the stored results, which are the run's own.
            events = await store.events_after(run.run_id, -1)
            results = replace(results, base_benchmarks=results_from_events(run.run_id, run.state, events)
                              .base_benchmarks)
        # An adapter evaluated on a PR is a change someone wants measured: compare it with the base model, running
        # the baseline eval if none is stored (it is content-addressed, so every later PR reuses it). A base-model
        # eval is itself a baseline and is only compared when asked.
        wants = run.compare_ref is not None or job.adapter is not None or job.kind == "train+eval"
        try:
            return await self.compare_with_baseline(run.repo, run.number, results, job, run.run_id,
                                                    base_ref=run.compare_ref or BASE_MODEL,
                                                    explicit=wants and baseline_run is None, policy=policy)
        except (PlanError, CompareError, SpecError) as exc:
            log.warning("comparison for %s failed: %s", run.run_id, exc)
            return False

    async def post(self, repo: str, number: int | None, run_id: str, base: Results, new: Results, policy: Policy,
                   base_ref: str, *, context: CompareContext | None = None, key: str | None = None) -> None:
        # ~1 s for a full CMMLU + C-Eval bootstrap: keep it off the event loop.
        comparison: Comparison = await asyncio.to_thread(compare_results, base, new)
        if context is not None:
            comparison = replace(comparison, base_label=context.base_label, base_sha=context.base_sha,
                                 new_sha=context.new_sha, changes=context.changes)
        elif base_ref == BASE_MODEL:
            comparison = replace(comparison, base_label=BASE_MODEL)
        key = key or run_id
        conclusion: Conclusion = decide(comparison, policy.regression)
        run = await self.core.store.get_run(run_id)
        links = ReportLinks(actions_url=run.workflow_url if run else None)
        parts = render_comparison(comparison, conclusion, policy.language, links, key=key)
        if number is not None:
            for i, body in enumerate(parts, start=1):
                # Keyed by the moment it was decided; the remembered (subject, part) makes a repeat edit the earlier
                # report in place instead of posting a second copy.
                await self.core.write(f"compare:{key}:{base.run_id}:{i}:{self.core.clock():.6f}",
                                      "comment_create",
                                      {"repo": repo, "number": number, "body": body, "subject": f"compare:{key}",
                                       "purpose": f"part{i}", "marker": f"tunebot:compare:{key}"}, run_id=run_id)
        if run is not None:
            baseline = {b: ScoreView(score=r.score, n=r.n) for b, r in base.benchmarks.items()}
            await self.cards.complete_check(run, comparison=comparison, conclusion=conclusion)
            await self.cards.refresh(run_id, final=True, baseline=baseline, baseline_label=comparison.base_label
                                     or base_ref)
            if self.core.chat is not None:
                await self.core.chat.comparison(run, comparison, conclusion, policy)
