"""Launches and tracks what a comparison waits on: the commit a ref names, each seed's baseline decision (stored,
backfilled or the same recipe), a training's seed group, one baseline run for every PR that asks for it, and a notice
on those PRs when a run they wait on ends without results."""

from __future__ import annotations

import re

from bot.cards import Cards
from bot.core import Conversation, Core
from bot.github.port import PullInfo
from bot.jobs import Jobs, Reused
from bot.store import Run
from commands.baseline import BASE_MODEL, Baseline, ResolvedRef, decide_baseline
from commands.decision import Command
from commands.jobspec import JobSpec, SpecError, job_from_dict
from commands.plan import PlanError, PlannedJob, plan_recipe_baseline, seedless_key, with_seed
from commands.policy import DEFAULT_POLICY, Policy
from commands.recipe import Change, recipe_diff, recipe_of
from commands.render.fmt import code as fmt_code
from commands.render.i18n import Language, t

_FULL_SHA = re.compile(r"[0-9a-f]{40}")


class Baselines:
    def __init__(self, core: Core, cards: Cards, jobs: Jobs) -> None:
        self.core = core
        self.cards = cards
        self.jobs = jobs

    async def resolve(self, repo: str, ref: str) -> ResolvedRef | None:
        """A ref the user wrote, as a commit (a ref pinned at `/compare` time, `name@sha`, stays that commit)."""
        name, _, sha = ref.partition("@")
        if sha and _FULL_SHA.fullmatch(sha):
            return ResolvedRef(name, sha)
        found = await self.core.github.resolve_commit(repo, ref)
        return ResolvedRef(ref, found) if found else None

    async def head_training(self, repo: str, job: JobSpec) -> JobSpec | None:
        """The training job that made what `job` evaluated: itself, or the run its adapter came from."""
        if job.trains:
            return job
        if job.adapter is None:
            return None
        run = await self.core.store.get_run(job.adapter.run_id)
        if run is None or run.repo != repo or not run.job_spec:
            return None
        return job_from_dict(run.job_spec)

    async def decide(self, repo: str, job: JobSpec, head: JobSpec, ref: ResolvedRef, seeds: list[int]) \
            -> list[tuple[int, Baseline]]:
        """For each seed, plan the head's recipe (with that seed) at the ref's commit and decide
        (commands/baseline.decide_baseline)."""
        paths = sorted({d.id for d in head.datasets if d.source == "local"})
        blobs = await self.core.github.blob_shas(repo, paths, ref.sha) if paths else {}
        preset = self.core.catalog.models.get(head.model.name)
        out: list[tuple[int, Baseline]] = []
        for seed in seeds:
            head_s = with_seed(head, seed, head.run_id)
            try:
                planned: PlannedJob | str = plan_recipe_baseline(head_s, self.core.catalog, ref.sha, blobs,
                                                                 self.core.new_run_id(), ref.name, job.benchmarks)
            except (PlanError, SpecError) as exc:
                planned = str(exc)
            stored: dict[str, str] = {}
            changes: tuple[Change, ...] = ()
            head_key = ""
            if isinstance(planned, PlannedJob) and preset is not None:
                for key in planned.benchmark_keys.values():
                    hit = await self.core.store.find_result(repo, key)
                    if hit is not None:
                        stored[key] = hit[0]
                changes = recipe_diff(recipe_of(planned.job, preset), recipe_of(head_s, preset))
                head_key = recipe_of(head_s, preset).key()
            out.append((seed, decide_baseline(head_key, ref, planned, stored, changes)))
        return out

    async def seed_group(self, repo: str, head: JobSpec) -> dict[int, Run]:
        """The runs of the head's recipe on its PR at its commit, one per seed (succeeded or still going): what a
        multi-seed comparison judges together (`/train … seeds=N` makes them; `/compare … seeds=N` adds any
        missing)."""
        store = self.core.store
        head_run = await store.get_run(head.run_id)
        group: dict[int, Run] = {}
        if head_run is not None:
            group[head.hyper.seed] = head_run
        preset = self.core.catalog.models.get(head.model.name)
        if head_run is None or head_run.number is None or preset is None:
            return group
        recipe = seedless_key(head, preset)
        for run in await store.runs_for_pr(repo, head_run.number, limit=200):
            if run.state in ("failed", "cancelled") or not run.job_spec or run.head_sha != head.sha \
                    or run.kind not in ("train", "train+eval") or run.backfill_for is not None:
                continue
            try:
                other = job_from_dict(run.job_spec)
            except SpecError:
                continue
            if other.model.name == head.model.name and seedless_key(other, preset) == recipe:
                seed = other.hyper.seed
                # One run per seed: the finished one, else the newest.
                if seed not in group or (not group[seed].finished and run.finished):
                    group[seed] = run
        return group

    async def launch(self, origin: Run | None, repo: str, number: int, pull: PullInfo, policy: Policy,
                     planned: PlannedJob, ref: ResolvedRef, line: str) -> Run | Reused:
        """Start the baseline `planned` at `ref`, once for everyone: every PR asking for the same recipe at the same
        commit waits on one run (its trigger is the recipe key and the commit), and a new one is started only after a
        failed or cancelled attempt."""
        store = self.core.store
        base = f"baseline:{planned.result_key}:{ref.sha}"
        for attempt in range(100):
            trigger = base if attempt == 0 else f"{base}:{attempt}"
            existing = await store.find_run_by_trigger(f"{trigger}:run")
            if existing is not None and existing.state in ("failed", "cancelled"):
                continue
            if existing is not None:
                return existing
            conv = Conversation(repo, number, True, origin.actor if origin else self.core.bot_login, "OWNER",
                                trigger, policy)
            return await self.jobs.launch(conv, pull, Command("train", {}, line=line), planned, "run",
                                          backfill_for=origin.run_id if origin else None)
        raise PlanError(f"the baseline at {ref.label} failed 100 times: see its runs, then `/retry` one")

    def head_seed(self, head: JobSpec, seed: int, job: JobSpec) -> PlannedJob:
        """The head's training recipe with another seed, at the head's commit (a member of a multi-seed compare)."""
        blobs = {d.id: d.blob for d in head.datasets if d.source == "local"}
        return plan_recipe_baseline(with_seed(head, seed, head.run_id), self.core.catalog, head.sha, blobs,
                                    self.core.new_run_id(), "head", job.benchmarks)

    async def baseline_failed(self, run: Run) -> None:
        """A baseline run ended without results: tell every PR waiting on it that its comparison will not come, and
        why (the run's reason), with what to do."""
        store = self.core.store
        waiting: dict[str, Run] = {}
        if run.backfill_for is not None:
            origin = await store.get_run(run.backfill_for)
            if origin is not None:
                waiting[origin.run_id] = origin
        for other in await store.runs_comparing_with(run.repo, run.head_sha or ""):
            waiting.setdefault(other.run_id, other)
        for origin in waiting.values():
            if origin.number is None or origin.repo != run.repo:
                continue
            ref = (origin.compare_ref or "").partition("@")[0] or "?"
            label = f"{ref}@{(run.head_sha or '')[:7]}"
            language = await self._notice(run, origin.number, f"baseline-failed:{run.run_id}:{origin.run_id}",
                                          "cmp.backfill_failed", ref=fmt_code(label), new=fmt_code(origin.run_id))
            await self.cards.refresh(origin.run_id, final=True,
                                     baseline_label=t(language, "cmp.baseline_failed", ref=label))

    async def head_failed(self, run: Run) -> None:
        """A head-side member of a comparison (a seed it trained or an adapter it evaluated) ended without results:
        the comparison that waits on it will not come; say so on the PR, with why and what to do."""
        if run.number is None or not run.compare_ref or run.compare_ref == BASE_MODEL:
            return
        ref = run.compare_ref.partition("@")
        label = f"{ref[0]}@{ref[2][:7]}" if ref[2] else ref[0]
        job = job_from_dict(run.job_spec) if run.job_spec else None
        await self._notice(run, run.number, f"head-failed:{run.run_id}", "cmp.head_failed", ref=fmt_code(label),
                           seed=job.hyper.seed if job is not None else "?")

    async def _notice(self, run: Run, number: int, trigger: str, message: str, **values: object) -> Language:
        """Tell PR `number` that `run`, which a comparison there waits on, ended without results: its state, its
        reason and what to do (`message`). Returns the repository's language."""
        policy = await self.core.policy_for(run.repo)
        policy = policy if isinstance(policy, Policy) else DEFAULT_POLICY
        await self.core.reply(Conversation(run.repo, number, True, self.core.bot_login, "OWNER", trigger, policy),
                              "notice", t(policy.language, message, run=fmt_code(run.run_id), run_id=run.run_id,
                                          state=run.state, reason=(run.reason or "—").strip()[:500], **values))
        return policy.language
