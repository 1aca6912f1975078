"""The statistics behind a verdict, checked by hand and against SciPy."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from scipy import stats as sps

from commands.stats import (
    PairedCounts,
    binomial_sample,
    holm_adjust,
    mcnemar_exact_p,
    paired_bootstrap_ci,
    quantile,
    wilson_interval,
)

# --- McNemar ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (0, 10, Fraction(2, 1024)),  # all ten discordant pairs one way: 2 · (1/2)^10
        (10, 0, Fraction(2, 1024)),
        (5, 5, Fraction(1)),  # b = c is no evidence at all
        (0, 0, Fraction(1)),  # nothing flipped
        (1, 4, Fraction(2 * (1 + 5), 32)),  # 2 · (C(5,0) + C(5,1)) / 2^5 = 12/32
        (2, 8, Fraction(2 * (1 + 10 + 45), 1024)),  # 112/1024
        (0, 1, Fraction(1)),  # 2 · 1/2 = 1
        (3, 4, Fraction(1)),  # 2 · P(X ≤ 3 | n=7) = 1 exactly
    ],
)
def test_mcnemar_hand_computed(b: int, c: int, expected: Fraction) -> None:
    assert mcnemar_exact_p(b, c) == pytest.approx(float(expected), rel=1e-15)


def test_mcnemar_matches_scipy_binomtest_on_many_random_tables() -> None:
    rng = random.Random(20250115)
    tables = [(rng.randint(0, 60), rng.randint(0, 60)) for _ in range(400)]
    tables += [(rng.randint(0, 2000), rng.randint(0, 2000)) for _ in range(100)]
    for b, c in tables:
        if b + c == 0:
            continue
        expected = sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
        assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300), (b, c)


def test_mcnemar_is_symmetric_and_tiny_tails_do_not_underflow_to_garbage() -> None:
    assert mcnemar_exact_p(3, 40) == mcnemar_exact_p(40, 3)
    assert mcnemar_exact_p(0, 2000) == 0.0  # 2 · 2^-2000 is below the smallest double: 0, never negative or NaN
    assert 0.0 < mcnemar_exact_p(0, 1000) < 1e-290


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        mcnemar_exact_p(-1, 3)


# --- Holm -------------------------------------------------------------------------------------------------------------


def test_holm_hand_computed_keeps_input_order_and_monotonicity() -> None:
    # sorted: 0.01·4 = 0.04, 0.02·3 = 0.06, 0.03·2 = 0.06 (monotone), 0.5·1 = 0.5
    assert holm_adjust([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm_adjust([0.9, 0.3]) == pytest.approx([0.9, 0.6])
    assert holm_adjust([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 0.8·2 capped at 1, then monotone
    assert holm_adjust([]) == []
    assert holm_adjust([0.4, 0.4, 0.4]) == pytest.approx([1.0, 1.0, 1.0])


def test_holm_is_never_below_the_raw_p_and_never_above_bonferroni() -> None:
    rng = random.Random(3)
    for _ in range(200):
        ps = [rng.random() ** 3 for _ in range(rng.randint(1, 70))]
        adjusted = holm_adjust(ps)
        for p, a in zip(ps, adjusted, strict=True):
            assert p <= a <= min(1.0, p * len(ps)) + 1e-12


# --- bootstrap --------------------------------------------------------------------------------------------------------


def test_binomial_sampler_matches_the_binomial_law() -> None:
    """Chi-square goodness of fit against scipy's pmf, for both code paths (inversion and BTRS)."""
    rng = random.Random(11)
    for n, p in [(30, 0.1), (200, 0.3), (11582, 0.06), (500, 0.8)]:
        draws = [binomial_sample(rng, n, p) for _ in range(20000)]
        dist = sps.binom(n, p)
        lo, hi = int(dist.ppf(0.001)), int(dist.ppf(0.999))
        edges = list(range(lo, hi + 1))
        observed = [sum(1 for d in draws if d <= lo)] + [draws.count(k) for k in edges[1:-1]] + \
            [sum(1 for d in draws if d >= hi)]
        probs = [dist.cdf(lo)] + [dist.pmf(k) for k in edges[1:-1]] + [dist.sf(hi - 1)]
        expected = [20000 * q for q in probs]
        # Merge sparse bins so the chi-square approximation holds.
        obs_m, exp_m, acc_o, acc_e = [], [], 0.0, 0.0
        for o, e in zip(observed, expected, strict=True):
            acc_o += o
            acc_e += e
            if acc_e >= 20:
                obs_m.append(acc_o)
                exp_m.append(acc_e)
                acc_o = acc_e = 0.0
        obs_m[-1] += acc_o
        exp_m[-1] += acc_e
        scale = sum(obs_m) / sum(exp_m)
        stat = sps.chisquare(obs_m, [e * scale for e in exp_m])
        assert stat.pvalue > 1e-3, (n, p, stat)
        assert sum(draws) / len(draws) == pytest.approx(n * p, rel=0.02)


def test_binomial_sampler_edges() -> None:
    rng = random.Random(0)
    assert binomial_sample(rng, 0, 0.5) == 0
    assert binomial_sample(rng, 10, 0.0) == 0
    assert binomial_sample(rng, 10, 1.0) == 10
    with pytest.raises(ValueError):
        binomial_sample(rng, 10, 1.5)


def test_bootstrap_is_reproducible_for_a_seed_and_changes_with_it() -> None:
    counts = PairedCounts(n=1000, base_correct=500, new_correct=530, b=60, c=90)
    assert paired_bootstrap_ci(counts, seed=7) == paired_bootstrap_ci(counts, seed=7)
    assert paired_bootstrap_ci(counts, seed=7) != paired_bootstrap_ci(counts, seed=8)


def test_bootstrap_interval_covers_the_point_estimate() -> None:
    rng = random.Random(5)
    for _ in range(60):
        n = rng.randint(20, 3000)
        b = rng.randint(0, n // 4)
        c = rng.randint(0, n // 4)
        base = rng.randint(b, n - c)
        counts = PairedCounts(n=n, base_correct=base, new_correct=base - b + c, b=b, c=c)
        lo, hi = paired_bootstrap_ci(counts, seed=rng.randint(0, 10**6), resamples=500)
        assert lo <= counts.delta_points <= hi, (counts, lo, hi)


def test_bootstrap_matches_resampling_question_indices() -> None:
    """The multinomial shortcut is the same bootstrap as drawing n questions with replacement."""
    pairs = [(True, False)] * 30 + [(False, True)] * 55 + [(True, True)] * 100 + [(False, False)] * 115
    counts = PairedCounts.from_pairs(pairs)
    fast = paired_bootstrap_ci(counts, seed=1, resamples=4000)
    rng = random.Random(2)
    n = len(pairs)
    naive = sorted(
        100.0 * sum(int(a) - int(b) for b, a in (pairs[rng.randrange(n)] for _ in range(n))) / n for _ in range(4000)
    )
    assert fast[0] == pytest.approx(quantile(naive, 0.025), abs=0.5)
    assert fast[1] == pytest.approx(quantile(naive, 0.975), abs=0.5)
    # and both agree with the normal approximation of the paired difference
    se = math.sqrt((counts.b + counts.c) / n - ((counts.c - counts.b) / n) ** 2) / math.sqrt(n) * 100
    assert fast[0] == pytest.approx(counts.delta_points - 1.96 * se, abs=0.6)


def test_bootstrap_without_flips_is_a_point() -> None:
    assert paired_bootstrap_ci(PairedCounts(n=50, base_correct=20, new_correct=20, b=0, c=0)) == (0.0, 0.0)
    assert paired_bootstrap_ci(PairedCounts(n=0, base_correct=0, new_correct=0, b=0, c=0)) == (0.0, 0.0)


def test_paired_counts_reject_inconsistent_numbers() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        PairedCounts(n=10, base_correct=5, new_correct=5, b=1, c=2)
    with pytest.raises(ValueError, match="exceed"):
        PairedCounts(n=3, base_correct=1, new_correct=1, b=2, c=2)


def test_quantile_matches_numpy_linear_method() -> None:
    values = sorted([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])
    for q in (0.0, 0.025, 0.5, 0.9, 1.0):
        assert quantile(values, q) == pytest.approx(float(sps.mstats.mquantiles(values, [q], alphap=1, betap=1)[0]))


def test_wilson_interval_matches_scipy() -> None:
    for k, n in [(0, 10), (7, 10), (480, 1000), (120, 120)]:
        ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(k, n)
        assert lo == pytest.approx(100 * ci.low, abs=1e-9)
        assert hi == pytest.approx(100 * ci.high, abs=1e-9)
