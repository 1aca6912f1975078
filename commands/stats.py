"""Paired-outcome statistics for accuracy benchmarks: McNemar's exact test, a paired bootstrap CI and Holm's correction.

Everything here is pure Python and deterministic: randomness comes only from a `random.Random` seeded by the caller,
and the samplers below are implemented here (not taken from the standard library) so that a given seed gives the same
interval on every Python version.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PairedCounts",
    "binomial_sample",
    "holm_adjust",
    "mcnemar_exact_p",
    "paired_bootstrap_ci",
    "quantile",
    "seed_delta_interval",
    "seed_delta_test",
    "wilson_interval",
]


@dataclass(frozen=True)
class PairedCounts:
    """Outcomes of the same `n` questions under two runs.

    `b` counts questions right before and wrong after (right→wrong), `c` wrong before and right after (wrong→right);
    the other `n - b - c` questions agree. Only `b` and `c` carry information about a change (McNemar).
    """

    n: int
    base_correct: int
    new_correct: int
    b: int
    c: int

    def __post_init__(self) -> None:
        if min(self.n, self.base_correct, self.new_correct, self.b, self.c) < 0:
            raise ValueError("paired counts must not be negative")
        if self.b + self.c > self.n or self.base_correct > self.n or self.new_correct > self.n:
            raise ValueError(f"paired counts exceed n={self.n}: {self}")
        if self.new_correct - self.base_correct != self.c - self.b:
            raise ValueError(f"inconsistent paired counts (new - base must equal c - b): {self}")

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[bool, bool]]) -> PairedCounts:
        """Count (base, new) outcome pairs."""
        base = sum(1 for b, _ in pairs if b)
        new = sum(1 for _, a in pairs if a)
        b = sum(1 for x, y in pairs if x and not y)
        c = sum(1 for x, y in pairs if y and not x)
        return cls(n=len(pairs), base_correct=base, new_correct=new, b=b, c=c)

    @property
    def delta_points(self) -> float:
        """New minus base accuracy, in percentage points (0 when there are no questions)."""
        return 100.0 * (self.new_correct - self.base_correct) / self.n if self.n else 0.0


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of min(b, c) out of b + c discordant pairs at p = 1/2.

    Computed with integers, so it is exact up to the final division (no underflow of tiny tail terms);
    b = c gives 1, and no discordant pairs at all gives 1.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must not be negative")
    n = b + c
    k = min(b, c)
    if n == 0 or 2 * k >= n:
        return 1.0
    # Sum C(n, i) for i = 0..k with an exact integer recurrence.
    term = 1
    tail = 1
    for i in range(k):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, (2 * tail) / (1 << n))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (step-down, monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (p_values[i], i))
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of already sorted values with linear interpolation (NumPy's default method)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile level must be in [0, 1], got {q}")
    h = (len(sorted_values) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def binomial_sample(rng: random.Random, n: int, p: float) -> int:
    """One draw from Binomial(n, p) using only `rng.random()`.

    Small means use inversion by geometric waiting times; larger ones use Hörmann's BTRS transformed rejection
    (W. Hörmann, "The generation of binomial random variates", 1993), so a draw costs O(1) even for n in the
    tens of thousands.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if n == 0 or p == 0.0:
        return 0
    if p == 1.0:
        return n
    if p > 0.5:
        return n - binomial_sample(rng, n, 1.0 - p)
    if n * p < 10.0:
        # Count successes by jumping over the geometric gaps between them.
        log_q = math.log1p(-p)
        x = 0
        y = 0
        while True:
            u = rng.random()
            if u == 0.0:
                continue
            y += math.floor(math.log(u) / log_q) + 1
            if y > n:
                return x
            x += 1
    q = 1.0 - p
    spq = math.sqrt(n * p * q)
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    v_r = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    lpq = math.log(p / q)
    m = math.floor((n + 1) * p)
    h = math.lgamma(m + 1) + math.lgamma(n - m + 1)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        if us <= 0.0:
            continue
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        if us >= 0.07 and v <= v_r:
            return k
        v *= alpha / (a / (us * us) + b)
        if v > 0.0 and math.log(v) <= h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - m) * lpq:
            return k


def paired_bootstrap_ci(
    counts: PairedCounts,
    *,
    seed: int | str = 0,
    resamples: int = 2000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval for Δ (points) from resampling the n questions with replacement.

    Δ of a resample depends only on how many right→wrong and wrong→right questions it drew, and those counts
    follow a multinomial law; drawing them directly is the same bootstrap as drawing n question indices, at
    O(1) instead of O(n) per resample.
    """
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1, got {level}")
    n, b, c = counts.n, counts.b, counts.c
    if n == 0:
        return (0.0, 0.0)
    rng = random.Random(seed)
    p_c = c / n
    # Conditional on the wrong→right draws, the right→wrong ones are binomial over the remaining draws.
    p_b_rest = b / (n - c) if n > c else 0.0
    deltas: list[float] = []
    for _ in range(resamples):
        drawn_c = binomial_sample(rng, n, p_c)
        drawn_b = binomial_sample(rng, n - drawn_c, p_b_rest)
        deltas.append(100.0 * (drawn_c - drawn_b) / n)
    deltas.sort()
    tail = (1.0 - level) / 2.0
    return (quantile(deltas, tail), quantile(deltas, 1.0 - tail))


def wilson_interval(correct: int, n: int, *, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for an accuracy, in points (0-100); (0, 100) when there are no questions."""
    if n <= 0:
        return (0.0, 100.0)
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} must be between 0 and n={n}")
    phat = correct / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half))


@dataclass(frozen=True)
class SeedSummary:
    """Scores of one recipe trained with several seeds (same questions): mean and sample sd across seeds."""

    scores: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    @property
    def sd(self) -> float | None:
        """Sample standard deviation across seeds; None with one seed (training noise not measured)."""
        k = len(self.scores)
        if k < 2:
            return None
        m = self.mean
        return math.sqrt(sum((s - m) ** 2 for s in self.scores) / (k - 1))


def seed_delta_test(base: Sequence[float], new: Sequence[float]) -> tuple[float, float | None]:
    """Mean Δ across seeds and a two-sided p-value for "no difference" that accounts for between-seed variance:
    Welch's t-test on the per-seed scores of both sides (seeds are independent trainings, not pairs). None when
    either side has a single seed: then only evaluation noise (McNemar) is measured, not training noise."""
    a, b = SeedSummary(tuple(base)), SeedSummary(tuple(new))
    delta = b.mean - a.mean
    if a.sd is None or b.sd is None:
        return delta, None
    va, vb = a.sd ** 2 / len(a.scores), b.sd ** 2 / len(b.scores)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return delta, 1.0 if delta == 0 else 0.0
    t_stat = delta / se
    df = (va + vb) ** 2 / ((va ** 2 / (len(a.scores) - 1)) + (vb ** 2 / (len(b.scores) - 1)))
    return delta, _student_t_two_sided(abs(t_stat), df)


def seed_delta_interval(base: Sequence[float], new: Sequence[float], alpha: float = 0.05) \
        -> tuple[float, float] | None:
    """The Welch (1 - alpha) interval on the mean Δ across seeds (None with a single seed on either side)."""
    a, b = SeedSummary(tuple(base)), SeedSummary(tuple(new))
    if a.sd is None or b.sd is None:
        return None
    delta = b.mean - a.mean
    va, vb = a.sd ** 2 / len(a.scores), b.sd ** 2 / len(b.scores)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return delta, delta
    df = (va + vb) ** 2 / ((va ** 2 / (len(a.scores) - 1)) + (vb ** 2 / (len(b.scores) - 1)))
    lo, hi = 0.0, 1e6  # the t quantile by bisection on the two-sided tail (monotone in t)
    for _ in range(200):
        mid = (lo + hi) / 2
        if _student_t_two_sided(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
    return delta - hi * se, delta + hi * se


def _student_t_two_sided(t_abs: float, df: float) -> float:
    """P(|T| >= t) for Student's t with `df` degrees of freedom, through the regularized incomplete beta function."""
    x = df / (df + t_abs * t_abs)
    return min(1.0, max(0.0, _betainc(df / 2.0, 0.5, x)))


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (Numerical Recipes, betacf)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        even = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return front * h / a
