"""Question-by-question comparison and the regression policy that turns it into a check conclusion."""

from __future__ import annotations

from math import comb

import pytest

from commands.compare import (
    BenchmarkComparison,
    CompareError,
    Comparison,
    RegressionRule,
    compare_benchmarks,
    compare_results,
    decide,
    natural_key,
    rule_for,
)
from commands.results import BenchmarkResult, Results, SubsetScore
from commands.stats import PairedCounts, mcnemar_exact_p
from tests.commands.render.fixtures import benchmark, results_pair


def _flip_benchmark(right_to_wrong: int, wrong_to_right: int, same_right: int, same_wrong: int,
                    subject: str = "arts") -> tuple[BenchmarkResult, BenchmarkResult]:
    base: dict[str, bool] = {}
    new: dict[str, bool] = {}
    row = 0
    for count, before, after in [(right_to_wrong, True, False), (wrong_to_right, False, True),
                                 (same_right, True, True), (same_wrong, False, False)]:
        for _ in range(count):
            base[f"{subject}/{row}"] = before
            new[f"{subject}/{row}"] = after
            row += 1
    return benchmark("cmmlu", base), benchmark("cmmlu", new)


def test_counts_delta_p_and_flips_on_a_hand_built_table() -> None:
    base, new = _flip_benchmark(right_to_wrong=0, wrong_to_right=10, same_right=40, same_wrong=50)
    cmp = compare_benchmarks(base, new)
    assert (cmp.n, cmp.counts.b, cmp.counts.c) == (100, 0, 10)
    assert cmp.base_score == 40.0 and cmp.new_score == 50.0 and cmp.delta == 10.0
    assert cmp.p_value == pytest.approx(2 / 1024)
    assert cmp.verdict == "improved"
    assert cmp.ci_low is not None and cmp.ci_high is not None and cmp.ci_low <= 10.0 <= cmp.ci_high
    assert cmp.wrong_to_right == tuple(f"arts/{i}" for i in range(10))
    assert cmp.right_to_wrong == ()
    assert cmp.same_questions and cmp.paired


def test_balanced_flips_are_within_noise_and_regression_is_detected() -> None:
    base, new = _flip_benchmark(right_to_wrong=7, wrong_to_right=7, same_right=30, same_wrong=30)
    cmp = compare_benchmarks(base, new)
    assert cmp.p_value == 1.0 and cmp.verdict == "within_noise" and cmp.delta == 0.0
    base, new = _flip_benchmark(right_to_wrong=25, wrong_to_right=5, same_right=100, same_wrong=100)
    cmp = compare_benchmarks(base, new)
    assert cmp.verdict == "regressed"
    # Exact two-sided binomial test on the 30 discordant pairs: 2 · P(X ≤ 5 | n=30, p=1/2).
    assert cmp.p_value == pytest.approx(2 * sum(comb(30, k) for k in range(6)) / 2**30)


def test_alpha_is_configurable() -> None:
    base, new = _flip_benchmark(right_to_wrong=4, wrong_to_right=13, same_right=50, same_wrong=50)
    p = 2 * sum(comb(17, k) for k in range(5)) / 2**17  # 0.049: significant at 5 %, not at 1 %
    assert 0.01 < p < 0.05 and compare_benchmarks(base, new).p_value == pytest.approx(p)
    assert compare_benchmarks(base, new, alpha=0.05).verdict == "improved"
    assert compare_benchmarks(base, new, alpha=0.01).verdict == "within_noise"
    with pytest.raises(CompareError, match="alpha"):
        compare_benchmarks(base, new, alpha=1.5)


def test_only_common_questions_are_compared_and_the_rest_are_counted() -> None:
    base_q = {f"arts/{i}": i % 2 == 0 for i in range(10)}
    new_q = {f"arts/{i}": True for i in range(3, 14)}
    cmp = compare_benchmarks(benchmark("cmmlu", base_q), benchmark("cmmlu", new_q))
    assert cmp.n == 7  # arts/3 .. arts/9
    assert (cmp.only_in_base, cmp.only_in_new) == (3, 4)
    assert not cmp.same_questions
    assert cmp.wrong_to_right == ("arts/3", "arts/5", "arts/7", "arts/9")
    # each run's own overall score is kept for reference
    assert cmp.base_reported == 50.0 and cmp.new_reported == 100.0


def test_no_common_question_is_a_clear_error() -> None:
    with pytest.raises(CompareError, match="no question in common"):
        compare_benchmarks(benchmark("cmmlu", {"arts/1": True}), benchmark("cmmlu", {"arts/2": True}))
    with pytest.raises(CompareError, match="cannot compare benchmark"):
        compare_benchmarks(benchmark("cmmlu", {"arts/1": True}), benchmark("ceval", {"arts/1": True}))


def test_per_subject_comparison_uses_holm() -> None:
    base_q: dict[str, bool] = {}
    new_q: dict[str, bool] = {}
    # "arts" improves strongly; 20 other subjects get one wrong→right flip each (noise).
    for i in range(30):
        base_q[f"arts/{i}"] = False
        new_q[f"arts/{i}"] = True
    for s in range(20):
        for i in range(10):
            ok = i < 5
            base_q[f"s{s}/{i}"] = ok
            new_q[f"s{s}/{i}"] = ok or i == 5
    cmp = compare_benchmarks(benchmark("cmmlu", base_q), benchmark("cmmlu", new_q))
    by_name = {s.subject: s for s in cmp.subjects}
    assert len(by_name) == 21
    arts = by_name["arts"]
    assert arts.p_value == pytest.approx(2 * 0.5**30)
    assert arts.p_adjusted == pytest.approx(21 * 2 * 0.5**30)
    assert arts.verdict == "improved"
    assert all(by_name[f"s{s}"].verdict == "within_noise" for s in range(20))
    assert all(s.p_adjusted >= s.p_value for s in cmp.subjects)


def test_subject_of_a_question_prefers_known_subset_names() -> None:
    base = BenchmarkResult("general_mcq", {"my/set": SubsetScore(2, 1)}, {"my/set/1": True, "my/set/2": False})
    new = BenchmarkResult("general_mcq", {"my/set": SubsetScore(2, 2)}, {"my/set/1": True, "my/set/2": True})
    cmp = compare_benchmarks(base, new)
    assert [s.subject for s in cmp.subjects] == ["my/set"]


def test_runs_without_per_question_outcomes_are_not_tested() -> None:
    base = BenchmarkResult("ceval", {"logic": SubsetScore(100, 40)}, {})
    new = BenchmarkResult("ceval", {"logic": SubsetScore(100, 47)}, {})
    cmp = compare_benchmarks(base, new)
    assert not cmp.paired and cmp.verdict == "untested" and cmp.p_value is None
    assert cmp.delta == pytest.approx(7.0)
    with pytest.raises(CompareError, match="neither"):
        compare_benchmarks(BenchmarkResult("ceval", {}, {}), new)


def test_config_hash_difference_is_flagged() -> None:
    base = benchmark("cmmlu", {"arts/1": True}, "aaa")
    assert compare_benchmarks(base, benchmark("cmmlu", {"arts/1": True}, "bbb")).config_differs
    assert not compare_benchmarks(base, benchmark("cmmlu", {"arts/1": True}, "aaa")).config_differs
    assert not compare_benchmarks(base, benchmark("cmmlu", {"arts/1": True}, "")).config_differs


def test_compare_results_lists_benchmarks_only_one_run_has() -> None:
    base, new = results_pair()
    new = Results(run_id=new.run_id, status="succeeded",
                  benchmarks={"cmmlu": new.benchmarks["cmmlu"], "general_mcq": benchmark("general_mcq", {"d/1": True})})
    cmp = compare_results(base, new)
    assert [b.benchmark for b in cmp.benchmarks] == ["cmmlu"]
    assert cmp.only_in_base == ("ceval",) and cmp.only_in_new == ("general_mcq",)
    assert cmp.base_label == "run-base" and cmp.get("cmmlu") is cmp.benchmarks[0]


def test_comparison_is_reproducible_and_seed_dependent() -> None:
    base, new = results_pair()
    assert compare_results(base, new, seed=3) == compare_results(base, new, seed=3)
    a, b = compare_results(base, new, seed=3), compare_results(base, new, seed=4)
    intervals = [(x.ci_low, x.ci_high) for x in a.benchmarks] + [(s.ci_low, s.ci_high) for x in a.benchmarks
                                                                 for s in x.subjects]
    others = [(x.ci_low, x.ci_high) for x in b.benchmarks] + [(s.ci_low, s.ci_high) for x in b.benchmarks
                                                              for s in x.subjects]
    assert intervals != others
    assert [x.p_value for x in a.benchmarks] == [x.p_value for x in b.benchmarks]  # the exact test has no seed


def test_natural_order_of_question_ids() -> None:
    assert sorted(["arts/10", "arts/9", "anatomy/100", "arts/1"], key=natural_key) == \
        ["anatomy/100", "arts/1", "arts/9", "arts/10"]


# --- decide -------------------------------------------------------------------------------------------------------


def _bench(name: str, b: int, c: int, n: int = 1000, verdict: str | None = None) -> BenchmarkComparison:
    p = mcnemar_exact_p(b, c)
    v = verdict or ("improved" if p < 0.05 and c > b else "regressed" if p < 0.05 else "within_noise")
    return BenchmarkComparison(benchmark=name, counts=PairedCounts(n, 500, 500 - b + c, b, c), p_value=p,
                               ci_low=None, ci_high=None, verdict=v, alpha=0.05)  # type: ignore[arg-type]


def _cmp(*benches: BenchmarkComparison) -> Comparison:
    return Comparison(base_run="a", new_run="b", benchmarks=benches)


def test_rule_lookup_prefers_the_benchmark_over_the_wildcard() -> None:
    star, own = RegressionRule("*", max_loss=2.0), RegressionRule("cmmlu", max_loss=0.5)
    assert rule_for("cmmlu", (star, own)) is own
    assert rule_for("ceval", (star, own)) is star
    assert rule_for("ceval", (own,)) is None


@pytest.mark.parametrize(
    ("bench", "rules", "conclusion", "reason"),
    [
        # a significant 3-point loss breaks max_loss=1
        (_bench("cmmlu", 60, 30), (RegressionRule("*", max_loss=1.0),), "failure", "loss_exceeded"),
        # the same loss passes a looser rule
        (_bench("cmmlu", 60, 30), (RegressionRule("*", max_loss=5.0),), "success", "rules_met"),
        # a 1.2-point loss that is noise: failure without, neutral with require_significance
        (_bench("cmmlu", 27, 15), (RegressionRule("*", max_loss=1.0),), "failure", "loss_exceeded"),
        (_bench("cmmlu", 27, 15), (RegressionRule("*", max_loss=1.0, require_significance=True),), "neutral",
         "loss_within_noise"),
        # a required gain that is missing, present but not significant, present and significant
        (_bench("cmmlu", 20, 25), (RegressionRule("*", min_gain=1.0),), "neutral", "gain_missing"),
        (_bench("cmmlu", 20, 35), (RegressionRule("*", min_gain=1.0, require_significance=True),), "neutral",
         "gain_not_significant"),
        (_bench("cmmlu", 10, 60), (RegressionRule("*", min_gain=1.0, require_significance=True),), "success",
         "rules_met"),
        # no rules: a significant regression is neutral, never failure
        (_bench("cmmlu", 60, 30), (), "neutral", "no_rules_regressed"),
        (_bench("cmmlu", 30, 60), (), "success", "no_rules"),
        # a rule for another benchmark does not apply
        (_bench("cmmlu", 60, 30), (RegressionRule("ceval", max_loss=0.0),), "success", "rules_met"),
    ],
)
def test_decide(bench: BenchmarkComparison, rules: tuple[RegressionRule, ...], conclusion: str, reason: str) -> None:
    result = decide(_cmp(bench), rules)
    assert (result.conclusion, result.reason) == (conclusion, reason), result
    assert result.explanation


def test_decide_names_the_deciding_rule_and_the_worst_benchmark() -> None:
    rules = (RegressionRule("*", max_loss=1.0), RegressionRule("ceval", max_loss=3.0))
    result = decide(_cmp(_bench("ceval", 45, 20), _bench("cmmlu", 40, 20)), rules)
    # ceval lost 2.5 (allowed 3), cmmlu lost 2.0 (allowed 1): cmmlu decides under the "*" rule
    assert result.conclusion == "failure"
    assert result.benchmark == "cmmlu" and result.rule == "*: max_loss=1"
    assert result.delta == pytest.approx(-2.0) and result.threshold == 1.0
    assert "cmmlu lost 2.00 points" in result.explanation
    assert result.rules_checked == ("ceval ← ceval: max_loss=3", "cmmlu ← *: max_loss=1")


def test_failure_outranks_neutral() -> None:
    rules = (RegressionRule("cmmlu", min_gain=5.0), RegressionRule("ceval", max_loss=0.5))
    result = decide(_cmp(_bench("ceval", 40, 20), _bench("cmmlu", 20, 30)), rules)
    assert result.conclusion == "failure" and result.benchmark == "ceval"


def test_significance_without_per_question_data_is_untestable() -> None:
    bench = _bench("ceval", 0, 0, verdict="untested")
    bench = BenchmarkComparison(**{**bench.__dict__, "paired": False, "p_value": None})
    result = decide(_cmp(bench), (RegressionRule("*", max_loss=1.0, require_significance=True),))
    assert (result.conclusion, result.reason) == ("neutral", "untestable")


def test_nothing_compared_is_neutral() -> None:
    assert decide(_cmp(), (RegressionRule(),)).conclusion == "neutral"
