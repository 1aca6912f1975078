"""The results contract: per-benchmark scores with per-subject and per-question outcomes, plus the run's manifest."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import Event
from .jobspec import SpecError

RESULTS_VERSION = 1


@dataclass(frozen=True)
class SubsetScore:
    n: int
    correct: int

    @property
    def score(self) -> float:
        return self.correct / self.n if self.n else 0.0


@dataclass(frozen=True)
class BenchmarkResult:
    """Scores of one benchmark. `questions` maps a stable question id (`<subset>/<row id>`) to right (True)/wrong."""

    benchmark: str
    subsets: Mapping[str, SubsetScore]
    questions: Mapping[str, bool]
    config_hash: str = ""

    @property
    def n(self) -> int:
        return sum(s.n for s in self.subsets.values())

    @property
    def correct(self) -> int:
        return sum(s.correct for s in self.subsets.values())

    @property
    def score(self) -> float:
        """Micro average over all questions (what EvalScope reports as the overall score)."""
        return self.correct / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "score": self.score,
            "n": self.n,
            "correct": self.correct,
            "config_hash": self.config_hash,
            "subsets": {k: {"n": v.n, "correct": v.correct, "score": v.score} for k, v in sorted(self.subsets.items())},
            "questions": dict(sorted(self.questions.items())),
        }


@dataclass(frozen=True)
class Results:
    run_id: str
    status: str
    benchmarks: Mapping[str, BenchmarkResult] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    manifest: Mapping[str, Any] = field(default_factory=dict)
    artifacts: tuple[Mapping[str, Any], ...] = ()
    # The untuned base model's scores on the same questions, when the job asked for them (`eval_base`).
    base_benchmarks: Mapping[str, BenchmarkResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RESULTS_VERSION,
            "run_id": self.run_id,
            "status": self.status,
            "scores": {k: v.to_dict() for k, v in sorted(self.benchmarks.items())},
            "train": dict(self.train),
            "manifest": dict(self.manifest),
            "artifacts": [dict(a) for a in self.artifacts],
            **({"base_scores": {k: v.to_dict() for k, v in sorted(self.base_benchmarks.items())}}
               if self.base_benchmarks else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2, sort_keys=True)


def benchmark_from_dict(raw: Mapping[str, Any]) -> BenchmarkResult:
    try:
        subsets = {str(k): SubsetScore(n=int(v["n"]), correct=int(v["correct"])) for k, v in raw["subsets"].items()}
        questions = {str(k): bool(v) for k, v in raw.get("questions", {}).items()}
        return BenchmarkResult(benchmark=str(raw["benchmark"]), subsets=subsets, questions=questions,
                               config_hash=str(raw.get("config_hash", "")))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SpecError(f"results: malformed benchmark entry ({exc})") from None


def results_from_dict(raw: Any) -> Results:
    if not isinstance(raw, Mapping):
        raise SpecError("results: expected a JSON object")
    if raw.get("version") != RESULTS_VERSION:
        raise SpecError(f"results: unsupported version {raw.get('version')!r}; expected {RESULTS_VERSION}")
    scores = raw.get("scores", {})
    if not isinstance(scores, Mapping):
        raise SpecError("results.scores: expected an object")
    return Results(
        run_id=str(raw.get("run_id", "")),
        status=str(raw.get("status", "")),
        benchmarks={str(k): benchmark_from_dict(v) for k, v in scores.items()},
        train=dict(raw.get("train", {})),
        manifest=dict(raw.get("manifest", {})),
        artifacts=tuple(raw.get("artifacts", [])),
        base_benchmarks={str(k): benchmark_from_dict(v) for k, v in (raw.get("base_scores") or {}).items()},
    )


def results_from_events(run_id: str, status: str, events: Sequence[Event]) -> Results:
    """The results a run reported through its `eval_result` events (the agent's per-benchmark answer sheets)."""
    benches: dict[str, BenchmarkResult] = {}
    base: dict[str, BenchmarkResult] = {}
    manifest: dict[str, Any] = {}
    for ev in events:
        if ev.type != "eval_result":
            continue
        d = ev.data
        into = base if d.get("model") == "base" else benches
        subsets = {str(k): SubsetScore(n=int(v["n"]), correct=int(v["correct"]))
                   for k, v in (d.get("subsets") or {}).items() if isinstance(v, Mapping)}
        if not subsets:
            subsets = {"all": SubsetScore(n=int(d["n"]), correct=int(d.get("correct", round(d["score"] * d["n"]))))}
        questions = {str(k): bool(v) for k, v in (d.get("questions") or {}).items()}
        into[str(d["benchmark"])] = BenchmarkResult(str(d["benchmark"]), subsets, questions,
                                                    str(d.get("config_hash", "")))
        if into is base:
            continue
        for key, value in (d.get("manifest") or {}).items():
            # Per-benchmark records (`benchmark_data`: what each benchmark evaluated) arrive one event at a time.
            prev = manifest.get(key)
            manifest[key] = {**prev, **value} if isinstance(prev, Mapping) and isinstance(value, Mapping) else value
    return Results(run_id, status, benches, manifest=manifest, base_benchmarks=base)


def reported_backends(events: Sequence[Event], *, base: bool = False) -> dict[str, str]:
    """Benchmark -> the backend ("native" / "served") that produced its score, as the agent reported it in its
    `eval_result` events (the run's own scores, or with `base` the base model's); a benchmark whose event does not
    say (agents before the field) is left out."""
    out: dict[str, str] = {}
    for ev in events:
        if ev.type == "eval_result" and (ev.data.get("model") == "base") == base \
                and isinstance(ev.data.get("backend"), str):
            out[str(ev.data["benchmark"])] = str(ev.data["backend"])
    return out
