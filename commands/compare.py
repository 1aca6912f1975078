"""Compares two evaluation results question by question and decides whether a change is real (filled in by issue 5).

A comparison pairs the two runs' outcomes on the questions both answered, tests the change per benchmark and per
subject (McNemar's exact test, Holm-corrected across subjects), puts a paired bootstrap interval on Δ, and `decide`
turns it into a check-run conclusion under the repository's `RegressionRule`s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from .results import BenchmarkResult, Results
from .stats import (
    PairedCounts,
    SeedSummary,
    holm_adjust,
    mcnemar_exact_p,
    paired_bootstrap_ci,
    seed_delta_interval,
    seed_delta_test,
)


@dataclass(frozen=True)
class RegressionRule:
    """A repo's regression threshold for one benchmark ("*" for every benchmark), in accuracy points (0-100)."""

    benchmark: str = "*"
    min_gain: float | None = None
    max_loss: float | None = None
    require_significance: bool = False


Verdict = Literal["improved", "regressed", "within_noise", "untested"]
CheckConclusion = Literal["success", "neutral", "failure"]
DecisionReason = Literal[
    "no_rules",  # no rules configured: success unless something regressed significantly (then neutral)
    "no_rules_regressed",
    "rules_met",  # every applicable rule held
    "loss_exceeded",  # failure: a benchmark lost more than max_loss (significantly, when required)
    "loss_within_noise",  # neutral: lost more than max_loss but the loss is not significant
    "gain_missing",  # neutral: the gain is below min_gain
    "gain_not_significant",  # neutral: the gain reached min_gain but is not significant
    "untestable",  # neutral: significance required but no per-question data to test
    "nothing_compared",  # neutral: the two runs share no benchmark
]

DEFAULT_ALPHA = 0.05
DEFAULT_RESAMPLES = 2000


class CompareError(ValueError):
    """Two results that cannot be compared (the message says why)."""


class _Scores:
    """Scores and Δ in points (0-100) over the questions both runs answered, from `counts`."""

    counts: PairedCounts

    @property
    def n(self) -> int:
        return self.counts.n

    @property
    def base_score(self) -> float:
        return 100.0 * self.counts.base_correct / self.counts.n if self.counts.n else 0.0

    @property
    def new_score(self) -> float:
        return 100.0 * self.counts.new_correct / self.counts.n if self.counts.n else 0.0

    @property
    def delta(self) -> float:
        return self.counts.delta_points


@dataclass(frozen=True)
class SubjectComparison(_Scores):
    """One subject of one benchmark, on the questions both runs answered."""

    subject: str
    counts: PairedCounts
    p_value: float
    p_adjusted: float  # Holm-corrected over the subjects of the benchmark
    ci_low: float
    ci_high: float
    verdict: Verdict


@dataclass(frozen=True)
class SeedComparison:
    """One benchmark's scores with several training seeds per side (points, in seed order): what the verdict of a
    multi-seed comparison tests (Welch's t-test on the per-seed scores, so training noise counts)."""

    seeds: tuple[int, ...]
    base_scores: tuple[float, ...]
    new_scores: tuple[float, ...]
    p_value: float | None

    @property
    def base(self) -> SeedSummary:
        return SeedSummary(self.base_scores)

    @property
    def new(self) -> SeedSummary:
        return SeedSummary(self.new_scores)

    @property
    def delta(self) -> float:
        return self.new.mean - self.base.mean


@dataclass(frozen=True)
class BenchmarkComparison(_Scores):
    """One benchmark compared question by question. Scores and Δ are in points (0-100) over the common questions.

    When neither run has per-question outcomes (`paired` is False) the scores come from the subset totals, nothing
    is tested, and the verdict is "untested".
    """

    benchmark: str
    counts: PairedCounts
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: Verdict
    alpha: float
    subjects: tuple[SubjectComparison, ...] = ()
    right_to_wrong: tuple[str, ...] = ()  # question ids that regressed, sorted
    wrong_to_right: tuple[str, ...] = ()  # question ids that improved, sorted
    only_in_base: int = 0  # questions answered by the base run only (left out)
    only_in_new: int = 0
    paired: bool = True
    config_differs: bool = False  # the two runs evaluated with different settings (config hash)
    base_reported: float | None = None  # each run's own overall score (all its questions), in points
    new_reported: float | None = None
    seed: int = 0
    resamples: int = DEFAULT_RESAMPLES
    # Several training seeds per side: scores, Δ, p and the interval are across seeds (the question-level details
    # above are those of the first seed's pair of runs).
    seeds: SeedComparison | None = None

    @property
    def base_score(self) -> float:
        return self.seeds.base.mean if self.seeds is not None else super().base_score

    @property
    def new_score(self) -> float:
        return self.seeds.new.mean if self.seeds is not None else super().new_score

    @property
    def delta(self) -> float:
        return self.seeds.delta if self.seeds is not None else super().delta

    @property
    def significant(self) -> bool:
        return self.verdict in ("improved", "regressed")

    @property
    def same_questions(self) -> bool:
        return self.only_in_base == 0 and self.only_in_new == 0

    @property
    def subjects_tested(self) -> int:
        return len(self.subjects)


@dataclass(frozen=True)
class Comparison:
    """Every benchmark the two runs share, plus the ones only one of them has."""

    base_run: str
    new_run: str
    benchmarks: tuple[BenchmarkComparison, ...]
    only_in_base: tuple[str, ...] = ()
    only_in_new: tuple[str, ...] = ()
    alpha: float = DEFAULT_ALPHA
    base_label: str = ""
    new_label: str = ""
    # A recipe comparison (`/compare <ref>`): both commits and what differed between the recipes, for people.
    base_sha: str = ""
    new_sha: str = ""
    changes: tuple[str, ...] = ()

    def get(self, benchmark: str) -> BenchmarkComparison | None:
        return next((b for b in self.benchmarks if b.benchmark == benchmark), None)


@dataclass(frozen=True)
class Conclusion:
    """The check run's conclusion, which rule decided it, and why (English; renderers localise from the fields)."""

    conclusion: CheckConclusion
    rule: str
    explanation: str
    reason: DecisionReason = "rules_met"
    benchmark: str | None = None
    delta: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    rules_checked: tuple[str, ...] = field(default_factory=tuple)


# --- comparison -----------------------------------------------------------------------------------------------------


def _verdict(delta_sign: int, p: float, alpha: float) -> Verdict:
    if p < alpha and delta_sign > 0:
        return "improved"
    if p < alpha and delta_sign < 0:
        return "regressed"
    return "within_noise"


def natural_key(question_id: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts `arts/9` before `arts/10`."""
    return tuple((0, int(tok)) if tok.isdigit() else (1, tok) for tok in re.split(r"(\d+)", question_id) if tok)


def _p_text(p: float | None) -> str:
    if p is None:
        return "p unknown"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _subject_of(question_id: str, subsets: Iterable[str]) -> str:
    """The subset a question id belongs to: the longest known subset name that prefixes it, else text before '/'."""
    best = ""
    for name in subsets:
        if len(name) > len(best) and question_id.startswith(name + "/"):
            best = name
    if best:
        return best
    head, sep, _ = question_id.partition("/")
    return head if sep else "(unknown)"


def _check_alpha(alpha: float, resamples: int) -> None:
    if not 0.0 < alpha < 1.0:
        raise CompareError(f"alpha must be between 0 and 1, got {alpha}")
    if resamples < 1:
        raise CompareError(f"resamples must be at least 1, got {resamples}")


def compare_benchmarks(
    base: BenchmarkResult,
    new: BenchmarkResult,
    *,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
) -> BenchmarkComparison:
    """Compare one benchmark of two runs on the questions both answered.

    The benchmark-level verdict uses McNemar's p at `alpha`; subject-level verdicts use Holm-adjusted p-values
    over the benchmark's subjects, so testing 67 CMMLU subjects does not produce a handful of false alarms.
    The bootstrap for each benchmark and subject is seeded from (`seed`, benchmark, subject): reproducible, and
    independent of which other benchmarks are in the comparison.
    """
    _check_alpha(alpha, resamples)
    if base.benchmark != new.benchmark:
        raise CompareError(f"cannot compare benchmark {base.benchmark!r} with {new.benchmark!r}")
    name = base.benchmark
    config_differs = bool(base.config_hash and new.config_hash and base.config_hash != new.config_hash)
    base_reported = 100.0 * base.score if base.n else None
    new_reported = 100.0 * new.score if new.n else None

    if not base.questions or not new.questions:
        # Without per-question outcomes there is nothing to pair; report the totals, test nothing.
        if base.n == 0 or new.n == 0:
            raise CompareError(f"{name}: a run has neither per-question outcomes nor subset totals")
        counts = _unpaired_counts(base, new)
        return BenchmarkComparison(
            benchmark=name, counts=counts, p_value=None, ci_low=None, ci_high=None, verdict="untested",
            alpha=alpha, paired=False, config_differs=config_differs, base_reported=base_reported,
            new_reported=new_reported, seed=seed, resamples=resamples,
        )

    common = sorted(set(base.questions) & set(new.questions), key=natural_key)
    if not common:
        raise CompareError(f"{name}: the two runs answered no question in common")
    known_subsets = set(base.subsets) | set(new.subsets)
    by_subject: dict[str, list[tuple[bool, bool]]] = {}
    right_to_wrong: list[str] = []
    wrong_to_right: list[str] = []
    pairs: list[tuple[bool, bool]] = []
    for qid in common:
        pair = (base.questions[qid], new.questions[qid])
        pairs.append(pair)
        by_subject.setdefault(_subject_of(qid, known_subsets), []).append(pair)
        if pair == (True, False):
            right_to_wrong.append(qid)
        elif pair == (False, True):
            wrong_to_right.append(qid)

    counts = PairedCounts.from_pairs(pairs)
    p = mcnemar_exact_p(counts.b, counts.c)
    lo, hi = paired_bootstrap_ci(counts, seed=f"{seed}:{name}", resamples=resamples)

    subject_names = sorted(by_subject)
    subject_counts = [PairedCounts.from_pairs(by_subject[s]) for s in subject_names]
    subject_p = [mcnemar_exact_p(sc.b, sc.c) for sc in subject_counts]
    adjusted = holm_adjust(subject_p)
    subjects: list[SubjectComparison] = []
    for s, sc, sp, sa in zip(subject_names, subject_counts, subject_p, adjusted, strict=True):
        s_lo, s_hi = paired_bootstrap_ci(sc, seed=f"{seed}:{name}:{s}", resamples=resamples)
        subjects.append(SubjectComparison(
            subject=s, counts=sc, p_value=sp, p_adjusted=sa, ci_low=s_lo, ci_high=s_hi,
            verdict=_verdict(sc.c - sc.b, sa, alpha),
        ))

    return BenchmarkComparison(
        benchmark=name,
        counts=counts,
        p_value=p,
        ci_low=lo,
        ci_high=hi,
        verdict=_verdict(counts.c - counts.b, p, alpha),
        alpha=alpha,
        subjects=tuple(subjects),
        right_to_wrong=tuple(right_to_wrong),
        wrong_to_right=tuple(wrong_to_right),
        only_in_base=len(base.questions) - len(common),
        only_in_new=len(new.questions) - len(common),
        paired=True,
        config_differs=config_differs,
        base_reported=base_reported,
        new_reported=new_reported,
        seed=seed,
        resamples=resamples,
    )


def _unpaired_counts(base: BenchmarkResult, new: BenchmarkResult) -> PairedCounts:
    """Totals-only comparison: score each run on its own questions, expressed over the smaller n.

    The b/c split is unknown; the minimal consistent one (all disagreement in one direction) is recorded so that
    `PairedCounts` stays internally consistent, and nothing downstream tests it (the verdict is "untested").
    """
    n = min(base.n, new.n)
    base_correct = round(base.score * n)
    new_correct = round(new.score * n)
    diff = new_correct - base_correct
    return PairedCounts(n=n, base_correct=base_correct, new_correct=new_correct, b=max(0, -diff), c=max(0, diff))


def compare_results(
    base: Results,
    new: Results,
    *,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    base_label: str = "",
    new_label: str = "",
) -> Comparison:
    """Compare every benchmark both runs evaluated; benchmarks only one run has are listed, not compared."""
    _check_alpha(alpha, resamples)
    shared = sorted(set(base.benchmarks) & set(new.benchmarks))
    compared = tuple(
        compare_benchmarks(base.benchmarks[b], new.benchmarks[b], alpha=alpha, seed=seed, resamples=resamples)
        for b in shared
    )
    return Comparison(
        base_run=base.run_id,
        new_run=new.run_id,
        benchmarks=compared,
        only_in_base=tuple(sorted(set(base.benchmarks) - set(new.benchmarks))),
        only_in_new=tuple(sorted(set(new.benchmarks) - set(base.benchmarks))),
        alpha=alpha,
        base_label=base_label or base.run_id,
        new_label=new_label or new.run_id,
    )


def with_seeds(comparison: Comparison, seeds: Sequence[int], base: Sequence[Results], new: Sequence[Results]) \
        -> Comparison:
    """A comparison of the first seeds' runs (`comparison`), judged across all seeds: `base[i]` and `new[i]` are the
    runs of seed `seeds[i]` on each side. Each shared benchmark's Δ, p, interval and verdict become those of Welch's
    t-test on the per-seed scores, so a difference has to stand out from training noise, not only evaluation noise.
    With one seed the comparison is returned as it was (training noise not measured)."""
    if len(seeds) < 2 or len(base) != len(seeds) or len(new) != len(seeds):
        return comparison
    out = []
    for b in comparison.benchmarks:
        if not all(b.benchmark in r.benchmarks for r in (*base, *new)):
            out.append(b)
            continue
        base_scores = tuple(100.0 * r.benchmarks[b.benchmark].score for r in base)
        new_scores = tuple(100.0 * r.benchmarks[b.benchmark].score for r in new)
        delta, p = seed_delta_test(base_scores, new_scores)
        ci = seed_delta_interval(base_scores, new_scores, comparison.alpha)
        verdict: Verdict = "untested" if p is None else _verdict((delta > 0) - (delta < 0), p, comparison.alpha)
        out.append(replace(b, p_value=p, ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None,
                           verdict=verdict, seeds=SeedComparison(tuple(seeds), base_scores, new_scores, p)))
    return replace(comparison, benchmarks=tuple(out))


# --- regression policy ----------------------------------------------------------------------------------------------


def describe_rule(rule: RegressionRule) -> str:
    """A compact, language-neutral spelling of a rule, e.g. `cmmlu: max_loss=1.0, min_gain=0.5, significant`."""
    parts: list[str] = []
    if rule.max_loss is not None:
        parts.append(f"max_loss={rule.max_loss:g}")
    if rule.min_gain is not None:
        parts.append(f"min_gain={rule.min_gain:g}")
    if rule.require_significance:
        parts.append("significant")
    return f"{rule.benchmark}: {', '.join(parts) if parts else 'no threshold'}"


def rule_for(benchmark: str, rules: Sequence[RegressionRule]) -> RegressionRule | None:
    """The rule that governs a benchmark: its own rule if there is one, else the "*" rule (first match wins)."""
    own = next((r for r in rules if r.benchmark == benchmark), None)
    return own if own is not None else next((r for r in rules if r.benchmark == "*"), None)


@dataclass(frozen=True)
class _Finding:
    severity: int  # 2 failure, 1 neutral
    reason: DecisionReason
    bench: BenchmarkComparison
    rule: RegressionRule
    threshold: float | None
    text: str


def _check(bench: BenchmarkComparison, rule: RegressionRule) -> _Finding | None:
    d = bench.delta
    name = bench.benchmark
    if rule.require_significance and not bench.paired:
        return _Finding(1, "untestable", bench, rule, None,
                        f"{name}: significance is required but the runs have no per-question outcomes to test")
    if rule.max_loss is not None and -d > rule.max_loss:
        if rule.require_significance and bench.verdict != "regressed":
            return _Finding(1, "loss_within_noise", bench, rule, rule.max_loss,
                            f"{name} lost {-d:.2f} points (more than {rule.max_loss:g}) but the loss is within noise "
                            f"({_p_text(bench.p_value)})")
        return _Finding(2, "loss_exceeded", bench, rule, rule.max_loss,
                        f"{name} lost {-d:.2f} points, more than the allowed {rule.max_loss:g}")
    if rule.min_gain is not None:
        if d < rule.min_gain:
            return _Finding(1, "gain_missing", bench, rule, rule.min_gain,
                            f"{name} gained {d:+.2f} points, less than the required {rule.min_gain:g}")
        if rule.require_significance and bench.verdict != "improved":
            return _Finding(1, "gain_not_significant", bench, rule, rule.min_gain,
                            f"{name} gained {d:+.2f} points but the gain is not significant "
                            f"({_p_text(bench.p_value)})")
    return None


def decide(comparison: Comparison, rules: Sequence[RegressionRule] = ()) -> Conclusion:
    """The check-run conclusion: failure if any benchmark breaks a max_loss rule, neutral if a required gain or
    significance is missing, success otherwise.

    Each benchmark is judged by its own rule, else by the "*" rule; a rule for a benchmark the comparison lacks is
    not applied. Without rules a significant regression makes the check neutral (never failure: nobody asked
    for a gate), and anything else is success.
    """
    if not comparison.benchmarks:
        return Conclusion("neutral", "-", "The two runs share no benchmark; nothing was compared.",
                          reason="nothing_compared")
    if not rules:
        regressed = [b for b in comparison.benchmarks if b.verdict == "regressed"]
        if regressed:
            worst = min(regressed, key=lambda b: b.delta)
            return Conclusion(
                "neutral", "default (no regression rules configured)",
                f"{worst.benchmark} regressed significantly ({worst.delta:+.2f} points, {_p_text(worst.p_value)}); "
                "no regression rules are configured, so the check does not fail.",
                reason="no_rules_regressed", benchmark=worst.benchmark, delta=worst.delta, p_value=worst.p_value,
            )
        return Conclusion("success", "default (no regression rules configured)",
                          "No benchmark regressed significantly.", reason="no_rules")
    findings: list[_Finding] = []
    checked: list[str] = []
    for bench in comparison.benchmarks:
        rule = rule_for(bench.benchmark, rules)
        if rule is None:
            continue
        checked.append(f"{bench.benchmark} ← {describe_rule(rule)}")
        finding = _check(bench, rule)
        if finding is not None:
            findings.append(finding)
    if not findings:
        return Conclusion(
            "success",
            "; ".join(checked) if checked else "no rule applies",
            "Every benchmark met its regression rule." if checked else "No rule applies to the compared benchmarks.",
            reason="rules_met", rules_checked=tuple(checked),
        )
    # The most severe finding decides; among equals, the largest loss (or smallest gain) does.
    top = max(findings, key=lambda f: (f.severity, -f.bench.delta))
    return Conclusion(
        "failure" if top.severity == 2 else "neutral",
        describe_rule(top.rule),
        top.text,
        reason=top.reason,
        benchmark=top.bench.benchmark,
        delta=top.bench.delta,
        threshold=top.threshold,
        p_value=top.bench.p_value,
        rules_checked=tuple(checked),
    )
