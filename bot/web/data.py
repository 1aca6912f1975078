"""Assembles what each web page shows from the store (the same runs, events, results and comparisons the PR gets),
always for one repository: every query names it, and a run of another repository is "not found"."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.github.port import CommitInfo
from bot.service import Service
from bot.store import Run
from bot.store.models import StoredResult
from commands.baseline import BASE_MODEL
from commands.compare import CompareError, Comparison, compare_results
from commands.jobspec import SpecError, job_from_dict
from commands.plan import PlanError, PRFacts, plan_baseline
from commands.render.views import RunView, ScoreView
from commands.results import Results
from commands.run_view import build_run_view
from commands.stats import wilson_interval


@dataclass(frozen=True)
class RunRow:
    run: Run
    scores: Mapping[str, StoredResult]


@dataclass(frozen=True)
class SubjectRow:
    subject: str
    n: int
    correct: int

    @property
    def points(self) -> float:
        return 100.0 * self.correct / self.n if self.n else 0.0


@dataclass(frozen=True)
class RunPage:
    run: Run
    view: RunView
    recipe: Mapping[str, Any]
    subjects: Mapping[str, tuple[SubjectRow, ...]]
    comparison: Comparison | None
    baseline_run: str | None
    baseline_label: str
    baseline_loss: tuple[tuple[int, float], ...]
    backfills: tuple[Run, ...] = ()
    tracker_url: str | None = None  # the experiment tracker's page of this run (wandb, SwanLab, MLflow)


@dataclass(frozen=True)
class Point:
    index: int  # position of the commit on the branch, oldest = 0
    sha: str
    title: str
    run_id: str
    score: float  # points
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Series:
    benchmark: str
    label: str  # model (and eval config) the points share: only comparable results share a line
    points: tuple[Point, ...]


@dataclass(frozen=True)
class History:
    branch: str
    commits: tuple[CommitInfo, ...]  # oldest first
    series: tuple[Series, ...] = field(default_factory=tuple)


def recipe_of_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parts of a job spec a person reads as "the recipe" (the full spec is shown below it)."""
    spec = spec or {}
    model = spec.get("model") or {}
    out: dict[str, Any] = {
        "kind": spec.get("kind"),
        "model": model.get("name") if isinstance(model, dict) else model,
        "tuner": spec.get("tuner"),
        "commit": spec.get("sha"),
        "datasets": ", ".join(str(d.get("id")) for d in spec.get("datasets") or [] if isinstance(d, dict)),
        "benchmarks": ", ".join(str(b.get("name", b)) if isinstance(b, dict) else str(b)
                                for b in spec.get("benchmarks") or []),
    }
    for key, value in sorted((spec.get("hyper") or {}).items()):
        if value is not None:
            out[key] = value
    return {k: v for k, v in out.items() if v not in (None, "")}


def _loss(view_events: Sequence[Any], last_seq: int) -> tuple[tuple[int, float], ...]:
    out = []
    for ev in view_events:
        if ev.seq <= last_seq and ev.type == "progress" and ev.data.get("loss") is not None \
                and ev.data.get("phase", "train") == "train":
            out.append((int(ev.data["step"]), float(ev.data["loss"])))
    return tuple(out)


class WebData:
    """Read-only queries for the pages; nothing here writes to the store or to GitHub."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store

    async def runs(self, repo: str, limit: int = 100) -> list[RunRow]:
        runs = await self.store.runs_for_repo(repo, limit=limit)
        results = await self.store.results_for_repo(repo, run_ids=[r.run_id for r in runs])
        by_run: dict[str, dict[str, StoredResult]] = {}
        for r in results:
            by_run.setdefault(r.run_id, {})[r.benchmark] = r
        return [RunRow(run, by_run.get(run.run_id, {})) for run in runs]

    async def run_page(self, repo: str, run_id: str) -> RunPage | None:
        run = await self.store.get_run(run_id)
        if run is None or run.repo != repo:  # run ids are global; a page only ever shows its own repository's
            return None
        events = await self.store.events_after(run.run_id, -1)
        results = await self.store.load_results(run.run_id)
        base_id, base_label, base = await self._baseline(run, results)
        comparison: Comparison | None = None
        if base is not None and results is not None and results.benchmarks and base.benchmarks:
            try:  # the bootstrap takes ~1 s on full benchmarks: off the event loop, as the PR report does
                comparison = await asyncio.to_thread(compare_results, base, results)
            except CompareError:
                comparison = None
        baseline_scores: dict[str, ScoreView] = {}
        if base is not None:
            baseline_scores = {b: ScoreView(score=r.score, n=r.n) for b, r in base.benchmarks.items()}
        view = build_run_view(run, events, baseline=baseline_scores, baseline_label=base_label)
        subjects = {}
        for name, bench in (results.benchmarks.items() if results else ()):
            subjects[name] = tuple(SubjectRow(k, v.n, v.correct) for k, v in sorted(bench.subsets.items()))
        baseline_loss: tuple[tuple[int, float], ...] = ()
        if base_id is not None and base_id != run.run_id:
            other = await self.store.get_run(base_id)
            if other is not None and other.repo == repo:
                baseline_loss = _loss(await self.store.events_after(other.run_id, -1), other.last_seq)
        backfills = tuple(await self.store.backfills_for(repo, run.run_id))
        return RunPage(run=run, view=view, recipe=recipe_of_spec(run.job_spec), subjects=subjects,
                       comparison=comparison, baseline_run=base_id, baseline_label=base_label,
                       baseline_loss=baseline_loss, backfills=backfills, tracker_url=view.tracker_url)

    async def _baseline(self, run: Run, results: Results | None) -> tuple[str | None, str, Results | None]:
        """What the PR compared this run with: the run `/compare` named, the backfilled recipe at a ref, or the
        untuned base model on the same questions (content-addressed, so the stored one is found)."""
        if results is None or not results.benchmarks:
            return None, "", None
        store = self.store
        ref = run.compare_ref
        if ref and "@" not in ref and ref != BASE_MODEL:
            other = await store.get_run(ref)
            if other is not None and other.repo == run.repo:
                loaded = await store.load_results(other.run_id)
                if loaded is not None and loaded.benchmarks:
                    return other.run_id, other.run_id, loaded
        for backfill in await store.backfills_for(run.repo, run.run_id):
            if backfill.state == "succeeded":
                loaded = await store.load_results(backfill.run_id)
                if loaded is not None and loaded.benchmarks:
                    label = (ref or BASE_MODEL).split("@")[0]
                    return backfill.run_id, label, loaded
        if run.job_spec is None:
            return None, "", None
        try:
            job = job_from_dict(run.job_spec)
            pr = PRFacts(repo=run.repo, head_sha=job.sha, base_ref=BASE_MODEL, number=run.number)
            planned = plan_baseline(job, pr, self.service.core.catalog, "web-view")
        except (PlanError, SpecError, KeyError):
            return None, "", None
        reused = await self.service.jobs.stored(run.repo, planned.benchmark_keys)
        if reused is None or reused.run_id == run.run_id:
            return None, "", None
        return reused.run_id, BASE_MODEL, reused.results

    async def history(self, repo: str, branch: str, commits: Sequence[CommitInfo]) -> History:
        """Scores per benchmark along the branch's commits (oldest first), one line per model and eval config, each
        point with its 95% Wilson interval (the noise band: a move inside it is not a change)."""
        ordered = tuple(reversed(commits))
        position = {c.sha: i for i, c in enumerate(ordered)}
        results = await self.store.results_for_repo(repo, shas=list(position)) if position else []
        lines: dict[tuple[str, str, str], dict[int, Point]] = {}
        for r in results:  # oldest first: a later result at the same commit replaces an earlier one
            key = (r.benchmark, r.model or "?", r.config_hash)
            low, high = wilson_interval(r.correct, r.n)
            i = position[r.sha]
            lines.setdefault(key, {})[i] = Point(i, r.sha, ordered[i].title, r.run_id, 100.0 * r.score, low, high,
                                                 r.n)
        configs: dict[tuple[str, str], int] = {}
        for bench, model, _ in lines:
            configs[(bench, model)] = configs.get((bench, model), 0) + 1
        series = []
        for (bench, model, config), pts in sorted(lines.items()):
            label = model if configs[(bench, model)] == 1 else f"{model} · eval {config[:7]}"
            series.append(Series(bench, label, tuple(pts[i] for i in sorted(pts))))
        return History(branch=branch, commits=ordered, series=tuple(series))

    async def leaderboard(self, repo: str, limit: int = 20) -> dict[str, list[StoredResult]]:
        benchmarks = sorted({r.benchmark for r in await self.store.results_for_repo(repo)})
        return {b: await self.store.leaderboard(repo, b, limit) for b in benchmarks}
