"""Deterministic inputs for the statistics and rendering tests: two runs on real CMMLU / C-Eval subject names."""

from __future__ import annotations

import random
from collections.abc import Mapping

from commands.compare import Comparison, Conclusion, RegressionRule, compare_results, decide
from commands.render import Link, ProgressView, ReportLinks, RunView, ScoreView
from commands.results import BenchmarkResult, Results, SubsetScore

NOW = 1_736_900_000.0  # a fixed "now" (2025-01-15 00:13 UTC); renderers never read a clock
CMMLU_SUBJECTS = ("agronomy", "anatomy", "arts", "college_law", "high_school_physics", "marxist_theory")
CEVAL_SUBJECTS = ("computer_network", "operating_system", "logic")


def benchmark(name: str, questions: Mapping[str, bool], config_hash: str = "") -> BenchmarkResult:
    """A BenchmarkResult whose subset totals agree with its per-question outcomes."""
    subsets: dict[str, list[bool]] = {}
    for qid, ok in questions.items():
        subsets.setdefault(qid.split("/", 1)[0], []).append(ok)
    return BenchmarkResult(
        benchmark=name,
        subsets={k: SubsetScore(n=len(v), correct=sum(v)) for k, v in subsets.items()},
        questions=dict(questions),
        config_hash=config_hash,
    )


def paired_runs(
    subjects: tuple[str, ...],
    per_subject: int,
    base_acc: float,
    gains: Mapping[str, float],
    seed: int,
) -> tuple[dict[str, bool], dict[str, bool]]:
    """Outcomes of two runs on the same questions: the new run flips wrong answers right with probability gain
    (or right answers wrong when the gain is negative), plus a little symmetric churn."""
    rng = random.Random(seed)
    base: dict[str, bool] = {}
    new: dict[str, bool] = {}
    for subject in subjects:
        gain = gains.get(subject, 0.0)
        for row in range(per_subject):
            qid = f"{subject}/{row}"
            ok = rng.random() < base_acc
            after = ok
            if gain > 0 and not ok and rng.random() < gain:
                after = True
            elif gain < 0 and ok and rng.random() < -gain:
                after = False
            elif rng.random() < 0.04:
                after = not ok
            base[qid] = ok
            new[qid] = after
    return base, new


def results_pair() -> tuple[Results, Results]:
    cm_base, cm_new = paired_runs(CMMLU_SUBJECTS, 80, 0.5, {"arts": 0.6, "anatomy": 0.3, "college_law": -0.2}, 1)
    ce_base, ce_new = paired_runs(CEVAL_SUBJECTS, 40, 0.45, {}, 2)
    # The new run skipped two C-Eval questions and answered one the base run did not have.
    del ce_new["logic/0"], ce_new["logic/1"]
    ce_new["logic/999"] = True
    base = Results(run_id="run-base", status="succeeded", benchmarks={
        "cmmlu": benchmark("cmmlu", cm_base, "h1"), "ceval": benchmark("ceval", ce_base, "h2")})
    new = Results(run_id="run-new", status="succeeded", benchmarks={
        "cmmlu": benchmark("cmmlu", cm_new, "h1"), "ceval": benchmark("ceval", ce_new, "h2")})
    return base, new


def comparison() -> Comparison:
    base, new = results_pair()
    return compare_results(base, new, base_label="main@4f2a9c1", new_label="PR #42 @9b8e7d6")


RULES = (RegressionRule("*", max_loss=1.0, require_significance=True), RegressionRule("cmmlu", max_loss=0.5))


def conclusion() -> Conclusion:
    return decide(comparison(), RULES)


LINKS = ReportLinks(
    actions_url="https://github.com/acme/llm/actions/runs/123456789",
    artifacts_url="https://github.com/acme/llm/actions/runs/123456789#artifacts",
)


def loss_curve(steps: int = 300) -> tuple[tuple[int, float], ...]:
    rng = random.Random(7)
    return tuple((s, round(2.4 * (0.985 ** s) + 0.6 + rng.uniform(-0.05, 0.05), 4)) for s in range(1, steps + 1))


def run_view(state: str = "running", **changes: object) -> RunView:
    base: dict[str, object] = dict(
        run_id="tb-20250115-0042",
        command="/train qwen-7b lora_rank=16 learning_rate=2e-4",
        actor="alice",
        repo="acme/llm",
        sha="9b8e7d6c5b4a39281706f5e4d3c2b1a098765432",
        model="qwen-7b",
        state=state,
        kind="train+eval",
        tuner="lora",
        hyper={"lora_rank": 16, "learning_rate": 2e-4, "num_train_epochs": 1.0, "max_length": 2048},
        phase="train" if state == "running" else None,
        progress=ProgressView(step=120, total=300, loss=1.2345, learning_rate=1.6e-4, eta_s=754.0,
                              samples_per_s=3.21, epoch=0.4, phase="train"),
        actions_url="https://github.com/acme/llm/actions/runs/123456789",
        started_at=NOW - 600,
        updated_at=NOW,
    )
    if state == "succeeded":
        base.update(
            progress=ProgressView(step=300, total=300, loss=0.6512, learning_rate=0.0, samples_per_s=3.3, epoch=1.0),
            scores={"cmmlu": ScoreView(0.5427, 480), "ceval": ScoreView(0.4417, 120)},
            baseline={"cmmlu": ScoreView(0.5104, 480), "ceval": ScoreView(0.4500, 120)},
            baseline_label="main@4f2a9c1",
            loss=loss_curve(),
            artifacts=(Link("adapter", "https://github.com/acme/llm/actions/runs/123456789/artifacts/1"),
                       Link("results.json", "https://github.com/acme/llm/actions/runs/123456789/artifacts/2")),
            finished_at=NOW + 1200,
            updated_at=NOW + 1200,
        )
    if state == "failed":
        base.update(phase=None, reason="Traceback (most recent call last):\n  File \"swift/cli/sft.py\", line 5\n"
                    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
                    loss=loss_curve(40), finished_at=NOW + 60, updated_at=NOW + 60)
    if state == "cancelled":
        base.update(phase=None, reason="cancelled by @bob with /cancel", finished_at=NOW + 30, updated_at=NOW + 30)
    if state in ("queued", "dispatched"):
        base.update(phase=None, progress=None, started_at=None)
    base.update(changes)
    return RunView(**base)  # type: ignore[arg-type]
