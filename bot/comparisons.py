"""Decides what a run's results are compared with and posts the comparison (PR report, check run, card, chat); a
missing baseline is started (backfilled, bot/baselines.py) and compared when it lands."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace

from bot.baselines import Baselines
from bot.cards import Cards
from bot.core import Conversation, Core
from bot.github.port import PullInfo
from bot.jobs import Jobs, Reused
from bot.store import Run
from commands.baseline import BASE_MODEL, Backfill, NoBaseline, SameRecipe, UseStored, parse_target
from commands.compare import CompareError, Comparison, Conclusion, compare_results, decide, with_seeds
from commands.decision import Command
from commands.jobspec import AdapterRef, JobSpec, SpecError, content_hash, job_from_dict
from commands.plan import PlanError, PlannedJob, PRFacts, plan_baseline
from commands.policy import DEFAULT_POLICY, Policy
from commands.recipe import recipe_of
from commands.render import ReportLinks, ScoreView, render_cached_reply, render_comparison
from commands.render.fmt import code as fmt_code
from commands.render.github import compare_marker
from commands.render.i18n import t
from commands.results import Results, reported_backends, results_from_events

log = logging.getLogger(__name__)


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
        self.baselines = Baselines(core, cards, jobs)

    async def answer_reused(self, conv: Conversation, pull: PullInfo, pj: PlannedJob, reused: Reused,
                            key: str, seeds: int | None = None) -> None:
        """An evaluation the store already answers: say so with its scores, and compare if that was asked."""
        source = reused.source
        scores = {b: ScoreView(score=r.score, n=r.n) for b, r in reused.results.benchmarks.items()}
        text = render_cached_reply(reused.run_id, source.head_sha or "" if source else "", conv.language,
                                   run_url=source.workflow_url if source else None, scores=scores)
        await self.core.reply(conv, f"cached:{key}", text)
        if pj.compare_ref:
            await self.compare_with_baseline(conv.repo, conv.number, reused.results, pj.job, reused.run_id,
                                             base_ref=pj.compare_ref, explicit=True, policy=conv.policy, pull=pull,
                                             seeds=seeds)

    async def compare_with_baseline(self, repo: str, number: int | None, new: Results, job: JobSpec,
                                    new_run_id: str, *, base_ref: str, explicit: bool, policy: Policy,
                                    pull: PullInfo | None = None, seeds: int | None = None) -> bool:
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
                                              policy=policy, pull=pull, seeds=seeds)
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
        # `/train … seeds=N`: one report for the set (the first seed's run holds it), judged across the seeds,
        # once every seed has landed, instead of one report per seed.
        group = await self.baselines.seed_group(repo, job) if job.trains else {}
        anchor_id = group[min(group)].run_id if len(group) > 1 else new_run_id
        if stored is not None:
            if len(group) > 1:
                seeds = sorted(group)
                heads = [await store.load_results(group[s].run_id) for s in seeds]
                news = [h for h in heads if h is not None and h.benchmarks]
                if len(news) != len(seeds) or any(r.state != "succeeded" for r in group.values()):
                    return False
                await self.post(repo, number, anchor_id, stored.results, news[0], policy, BASE_MODEL,
                                seeds=(seeds, [stored.results] * len(seeds), news))
                return True
            await self.post(repo, number, new_run_id, stored.results, new, policy, BASE_MODEL)
            return True
        if not explicit or number is None:
            return False
        if pull is None:
            pull = await self.core.github.get_pull(repo, number)
        run = await store.get_run(new_run_id)
        # One base-model eval for a seed set, whichever seed lands first (the trigger names the set's first run).
        conv = Conversation(repo, number, True, run.actor if run else self.core.bot_login, "OWNER",
                            f"backfill:{anchor_id}", policy)
        cmd = Command("eval", {}, line=f"/eval {' '.join(new.benchmarks)} (baseline for {anchor_id})")
        started = await self.jobs.launch(conv, pull, cmd, base_pj, "baseline", backfill_for=anchor_id)
        if isinstance(started, Reused):  # stored in the meantime (another PR's backfill landed): compare now
            origin = await store.get_run(anchor_id)
            return origin is not None and await self.compare_finished(origin, baseline_run=started.run_id)
        return False

    async def _compare_recipe(self, repo: str, number: int | None, new: Results, job: JobSpec, new_run_id: str,
                              ref_text: str, *, explicit: bool, policy: Policy, pull: PullInfo | None,
                              seeds: int | None = None) -> bool:
        store = self.core.store
        ref = await self.baselines.resolve(repo, ref_text)
        if ref is None:
            raise PlanError(f"`{ref_text}` is not a branch, tag or commit of {repo}: nothing was started")
        head = await self.baselines.head_training(repo, job)
        if head is None:
            raise PlanError("nothing trained to compare: this compares a trained adapter with the same recipe at "
                            "another commit; `/train …` first, or `/compare base-model`")
        group = await self.baselines.seed_group(repo, head)
        first = min(group) if group else head.hyper.seed
        wanted = [first + i for i in range(seeds)] if seeds else sorted(group) or [head.hyper.seed]
        decisions = await self.baselines.decide(repo, job, head, ref, wanted)
        anchor_id = group[wanted[0]].run_id if wanted[0] in group else new_run_id
        key = f"{anchor_id}-vs-{_slug(ref.name)}"
        for _, decision in decisions:
            if isinstance(decision, NoBaseline):
                raise PlanError(decision.reason)
        if any(isinstance(d, SameRecipe) for _, d in decisions):
            if number is not None:
                head_key = recipe_of(head, self.core.catalog.models[head.model.name]).key()
                text = t(policy.language, "cmp.same_recipe", ref=fmt_code(ref.label), head=fmt_code(job.sha[:7]),
                         recipe=fmt_code(head_key[:12]))
                await self.core.write(f"compare:{key}:same:{self.core.clock():.6f}", "comment_create",
                                      {"repo": repo, "number": number, "body": f"{compare_marker(key)}\n{text}",
                                       "subject": f"compare:{key}", "purpose": "part1",
                                       "marker": f"tunebot:compare:{key}"}, run_id=new_run_id)
            return True
        changes = next((d.changes for _, d in decisions if isinstance(d, (UseStored, Backfill))), ())
        context = CompareContext(base_label=ref.label, base_sha=ref.sha, new_sha=job.sha,
                                 changes=tuple(c.text() for c in changes))
        missing_heads = [s for s in wanted if s not in group]
        # Each seed's head side is its adapter evaluated exactly as this comparison asks (content-addressed keys),
        # whichever run stored it: the /train run, a later eval of its adapter, or a seed trained for this compare.
        head_plans = {s: self.baselines.head_seed(head, s, job) for s in wanted}
        heads: dict[int, Results] = {}
        for s in wanted:
            reused = await self.jobs.stored(repo, head_plans[s].benchmark_keys)
            if reused is not None:
                heads[s] = reused.results
            elif s in group and group[s].run_id == new_run_id:
                heads[s] = new
        if len(heads) == len(wanted) and all(isinstance(d, UseStored) for _, d in decisions):
            base_runs = [await store.load_results(d.run_id) for _, d in decisions if isinstance(d, UseStored)]
            if any(b is None or not b.benchmarks for b in base_runs):
                raise PlanError("a stored baseline has no results")
            bases = [b for b in base_runs if b is not None]
            news = [heads[s] for s in wanted]
            one = len(wanted) == 1  # several seeds: the first seed's run holds the report
            await self.post(repo, number, new_run_id if one else anchor_id, bases[0], news[0], policy, ref.label,
                            context=context, key=key, seeds=None if one else (wanted, bases, news))
            return True
        if not explicit or number is None:
            return False  # waiting: a seed's training or a baseline is still running (it calls back when it lands)
        if pull is None:
            pull = await self.core.github.get_pull(repo, number)
        # The run that holds the intent: this PR's eval of the adapter (its benchmarks are the ones asked for), else
        # the first seed's training run (a stored answer may name another PR's run with the same recipe).
        evaluated = await store.get_run(new_run_id)
        own_eval = evaluated is not None and evaluated.kind == "eval" and evaluated.number == number
        anchor = (evaluated if own_eval else None) or group.get(wanted[0]) or evaluated
        pinned = f"{ref.name}@{ref.sha}"
        # Pin the ref to the commit it named now, so the comparison made when the backfill lands is against it.
        await store.update_run(anchor.run_id if anchor else new_run_id, now=self.core.now(), compare_ref=pinned,
                               compare_seeds=seeds)
        actor = anchor.actor if anchor else self.core.bot_login
        launched: list[Run | Reused] = []
        for seed in missing_heads:
            # `/compare … seeds=N` trains both sides with N seeds: the head's missing seeds too, at the head.
            conv = Conversation(repo, number, True, actor, "OWNER", f"seed:{anchor_id}:{seed}", policy)
            cmd = Command("train", {}, line=f"/train (seed {seed} of {anchor_id})")
            launched.append(await self.jobs.launch(conv, pull, cmd, replace(head_plans[seed], compare_ref=pinned,
                                                                             compare_seeds=seeds), "run"))
        for seed in wanted:
            if seed in heads or seed in missing_heads or group[seed].state != "succeeded" or job.adapter is None \
                    or job.trains:
                continue
            # A seed trained earlier (`/train … seeds=N`) but not evaluated as this comparison asks: evaluate its
            # adapter the same way.
            planned_eval = PlannedJob(
                job=replace(job, run_id=self.core.new_run_id(), callback=None,
                            adapter=AdapterRef(run_id=group[seed].run_id)),
                result_key=content_hash(sorted(head_plans[seed].benchmark_keys.values())),
                benchmark_keys=head_plans[seed].benchmark_keys,
                compare_ref=pinned, compare_seeds=seeds)
            conv = Conversation(repo, number, True, actor, "OWNER", f"seed-eval:{anchor_id}:{seed}", policy)
            cmd = Command("eval", {}, line=f"/eval (seed {seed} of {anchor_id})")
            launched.append(await self.jobs.launch(conv, pull, cmd, planned_eval, "run"))
        for seed, decision in decisions:
            if isinstance(decision, Backfill):
                line = f"/compare baseline {ref.label}: the recipe of {head.run_id} (seed {seed}) at {ref.sha[:7]}"
                launched.append(await self.baselines.launch(anchor, repo, number, pull, policy, decision.planned, ref,
                                                            line))
        started = [run.run_id for run in launched if isinstance(run, Run)]
        if started:
            await self.core.reply(Conversation(repo, number, True, self.core.bot_login, "OWNER",
                                               f"backfill:{anchor_id}:{ref.sha}", policy),
                                  f"baseline:{started[0]}",
                                  t(policy.language, "cmp.backfill", ref=fmt_code(ref.label),
                                    run=", ".join(fmt_code(r) for r in started), new=fmt_code(anchor_id),
                                    changes="".join(f"\n- {fmt_code(c.text())}" for c in changes)))
            await self.cards.refresh(anchor_id, final=True,
                                     baseline_label=t(policy.language, "cmp.baseline_training", ref=ref.label))
        return False

    async def compare_finished(self, run: Run, baseline_run: str | None = None) -> bool:
        """After a run's evaluation: compare it (explicitly asked, auto when a baseline exists, or a backfill)."""
        store = self.core.store
        if run.backfill_for is not None and baseline_run is None:
            await self.cards.finished(run)
            # Its own PR first, then every other PR that asked for the same baseline while it ran (one run for all).
            origins = [run.backfill_for] + [o.run_id for o in await store.runs_comparing_with(run.repo,
                                                                                               run.head_sha or "")]
            compared = False
            for origin_id in dict.fromkeys(origins):
                origin = await store.get_run(origin_id)
                if origin is not None and origin.repo == run.repo and origin.run_id != run.run_id:
                    compared = await self.compare_finished(origin, baseline_run=run.run_id) or compared
            return compared
        results = await store.load_results(run.run_id)
        if results is None or not results.benchmarks or run.job_spec is None:
            return False
        policy = await self.core.policy_for(run.repo)
        policy = policy if isinstance(policy, Policy) else DEFAULT_POLICY
        job = job_from_dict(run.job_spec)
        events = await store.events_after(run.run_id, -1)
        used = set(reported_backends(events).values())
        if job.eval_backend == "served" and used == {"native"}:
            # The server could not start and the agent scored natively: the baseline is the native one, never a
            # served score (the results were stored under native keys too).
            job = replace(job, eval_backend=None)
        if job.eval_base:
            # The base model's scores from the same served evaluation live in the run's events (model="base"),
            # not in the stored results, which are the run's own.
            results = replace(results, base_benchmarks=results_from_events(run.run_id, run.state, events)
                              .base_benchmarks)
        # An adapter evaluated on a PR is a change someone wants measured: compare it with the base model, running
        # the baseline eval if none is stored (it is content-addressed, so every later PR reuses it). A base-model
        # eval is itself a baseline and is only compared when asked.
        wants = run.compare_ref is not None or job.adapter is not None or job.kind == "train+eval"
        try:
            return await self.compare_with_baseline(run.repo, run.number, results, job, run.run_id,
                                                    base_ref=run.compare_ref or BASE_MODEL,
                                                    explicit=wants and baseline_run is None, policy=policy,
                                                    seeds=run.compare_seeds)
        except (PlanError, CompareError, SpecError) as exc:
            log.warning("comparison for %s failed: %s", run.run_id, exc)
            return False

    async def post(self, repo: str, number: int | None, run_id: str, base: Results, new: Results, policy: Policy,
                   base_ref: str, *, context: CompareContext | None = None, key: str | None = None,
                   seeds: tuple[list[int], list[Results], list[Results]] | None = None) -> None:
        # ~1 s for a full CMMLU + C-Eval bootstrap: keep it off the event loop.
        comparison: Comparison = await asyncio.to_thread(compare_results, base, new)
        if seeds is not None:  # several seeds per side: judged across them (training noise measured)
            comparison = with_seeds(comparison, *seeds)
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
                await self.core.write(f"compare:{key}:{base.run_id}:{i}:{self.core.clock():.6f}", "comment_create",
                                      {"repo": repo, "number": number, "body": body, "subject": f"compare:{key}",
                                       "purpose": f"part{i}", "marker": f"tunebot:compare:{key}"}, run_id=run_id)
        if run is not None:
            baseline = {b: ScoreView(score=r.score, n=r.n) for b, r in base.benchmarks.items()}
            await self.cards.complete_check(run, comparison=comparison, conclusion=conclusion)
            await self.cards.refresh(run_id, final=True, baseline=baseline, baseline_label=comparison.base_label
                                     or base_ref)
            if self.core.chat is not None:
                await self.core.chat.comparison(run, comparison, conclusion, policy)
