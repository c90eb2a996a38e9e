"""The statistics of pass rates: Wilson intervals, Newcombe's interval for a difference, the
clustered rate and the paired difference over tests, pass@k; and the means the summary rows hold."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "Z80",
    "Z95",
    "Clustered",
    "Paired",
    "clustered_rate",
    "difference_interval",
    "geomean",
    "mean",
    "newcombe_interval",
    "paired_difference",
    "pass_at_k",
    "t_quantile",
    "tests_needed",
    "wilson_interval",
]

Z95 = 1.959964  # the normal quantile of a two-sided 95% interval
Z80 = 0.841621  # the normal quantile of 80% power


def wilson_interval(passed: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The 95% Wilson score interval of a pass rate; (0, 1) when there is no sample. `passed`
    and `n` may be fractional: an effective sample size (see `clustered_rate`)."""
    if n <= 0:
        return 0.0, 1.0
    rate = passed / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    passed_a: float, n_a: float, passed_b: float, n_b: float, z: float = Z95
) -> tuple[float, float]:
    """The 95% interval of rate a - rate b for independent samples: Newcombe's hybrid score
    method (method 10 of Newcombe 1998), built from the two Wilson intervals."""
    rate_a = passed_a / n_a if n_a else 0.0
    rate_b = passed_b / n_b if n_b else 0.0
    return difference_interval(
        rate_a, wilson_interval(passed_a, n_a, z), rate_b, wilson_interval(passed_b, n_b, z)
    )


def difference_interval(
    rate_a: float, limits_a: tuple[float, float], rate_b: float, limits_b: tuple[float, float]
) -> tuple[float, float]:
    """The interval of rate a - rate b from each rate's own interval (Newcombe's combination);
    with clustered limits (`clustered_rate`) each arm counts at its effective size."""
    (low_a, high_a), (low_b, high_b) = limits_a, limits_b
    difference = rate_a - rate_b
    below = math.sqrt((rate_a - low_a) ** 2 + (high_b - rate_b) ** 2)
    above = math.sqrt((high_a - rate_a) ** 2 + (rate_b - low_b) ** 2)
    return max(-1.0, difference - below), min(1.0, difference + above)


def pass_at_k(n: int, passed: int, k: int) -> float:
    """The unbiased estimate of the chance that at least one of k samples passes, from n samples
    of which `passed` passed (Chen et al. 2021): 1 - C(n - passed, k) / C(n, k)."""
    if not 0 < k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n = {n}")
    if n - passed < k:
        return 1.0
    return 1.0 - math.comb(n - passed, k) / math.comb(n, k)


def mean(values: list[float] | list[int]) -> float:
    """The arithmetic mean, rounded as the reports store it; 0 when there is no value."""
    return round(sum(values) / len(values), 6) if values else 0.0


def geomean(values: list[float]) -> float:
    """The geometric mean (of times or speedups); 0 when a value is not positive."""
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * result / a


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@lru_cache(maxsize=256)  # a report asks for the same few degrees of freedom again and again
def t_quantile(probability: float, df: float) -> float:
    """Student's t quantile with `df` degrees of freedom (0.975: a two-sided 95% interval)."""
    if not 0.5 <= probability < 1 or df <= 0:
        raise ValueError(
            f"t_quantile needs 0.5 <= probability < 1 and df > 0, got {probability}, {df}"
        )
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < probability:
        high *= 2
    for _ in range(200):  # bisection: the CDF is monotone
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < probability else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Clustered:
    """A pass rate over tests, each with several samples: the samples of one test are not
    independent draws of the rate over tests, so they count less (the design effect)."""

    rate: float  # the mean of the per-test rates
    low: float
    high: float
    tests: int
    samples: int
    design_effect: float  # how many samples count as one independent draw, 1 at the least


def clustered_rate(counts: Sequence[tuple[int, int]]) -> Clustered:
    """The rate over tests from (passed, n) per test, and its 95% interval: Wilson at the
    effective sample size N / D, where the design effect D is the variance of the mean of the
    per-test rates over the variance N independent samples would give (the Kish design effect,
    clipped to [1, most samples of a test]), with Student's t on T - 1 degrees of freedom in
    place of the normal quantile. With one sample per test (or one test) it is the plain
    Wilson interval of the pooled samples."""
    counted = [(passed, n) for passed, n in counts if n > 0]
    tests, samples = len(counted), sum(n for _, n in counted)
    if not counted:
        return Clustered(0.0, 0.0, 1.0, 0, 0, 1.0)
    rates = [passed / n for passed, n in counted]
    rate = sum(rates) / tests
    most = max(n for _, n in counted)
    if tests == 1 or most == 1:
        low, high = wilson_interval(rate * samples, samples)
        return Clustered(rate, low, high, tests, samples, 1.0)
    independent = rate * (1 - rate) / samples
    between = statistics.variance(rates) / tests
    effect = between / independent if independent > 0 else 1.0
    effect = min(max(effect, 1.0), float(most))
    effective = samples / effect
    low, high = wilson_interval(rate * effective, effective, t_quantile(0.975, tests - 1))
    return Clustered(rate, low, high, tests, samples, effect)


@dataclass(frozen=True)
class Paired:
    """Arm a's pass rate minus arm b's over the tests both counted samples on, test by test."""

    rate_a: float  # the mean of a's per-test rates
    rate_b: float
    low: float
    high: float
    tests: int
    samples_a: int
    samples_b: int
    design_effect: float  # of the difference, 1 at the least
    spread: float  # the variance of the per-test differences (0 with one test)
    paired_t: tuple[float, float] | None  # mean difference +- t s / sqrt(T); None under 2 tests
    these_tests: tuple[float, float]  # Newcombe over the pooled samples: for these tests only

    @property
    def difference(self) -> float:
        return self.rate_a - self.rate_b


def paired_difference(counts: Sequence[tuple[tuple[int, int], tuple[int, int]]]) -> Paired:
    """The difference of two arms' rates over tests from ((passed_a, n_a), (passed_b, n_b)) per
    test, every n > 0, and its 95% interval: Newcombe's combination of each arm's Wilson
    interval at its effective size N / D, where the design effect D is the variance of the mean
    per-test difference over the variance independent samples would give (clipped to [1, most
    samples of a test]), with Student's t on T - 1 degrees of freedom. A skill that helps some
    tests and hurts others spreads the differences, so more tests, not more samples, narrow it.
    With one sample per test (or one test) it is Newcombe's interval of the pooled samples."""
    if not counts or any(n <= 0 for pair in counts for _, n in pair):
        raise ValueError("paired_difference needs tests with counted samples in both arms")
    tests = len(counts)
    rates_a = [passed / n for (passed, n), _ in counts]
    rates_b = [passed / n for _, (passed, n) in counts]
    rate_a, rate_b = sum(rates_a) / tests, sum(rates_b) / tests
    samples_a = sum(n for (_, n), _ in counts)
    samples_b = sum(n for _, (_, n) in counts)
    pooled_a = sum(passed for (passed, _), _ in counts)
    pooled_b = sum(passed for _, (passed, _) in counts)
    these = newcombe_interval(pooled_a, samples_a, pooled_b, samples_b)
    most = max(max(a[1], b[1]) for a, b in counts)
    differences = [a - b for a, b in zip(rates_a, rates_b, strict=True)]
    spread = statistics.variance(differences) if tests > 1 else 0.0
    effect, z, paired_t = 1.0, Z95, None
    if tests > 1:
        t = t_quantile(0.975, tests - 1)
        half = t * math.sqrt(spread / tests)
        difference = rate_a - rate_b
        paired_t = (max(-1.0, difference - half), min(1.0, difference + half))
        # One sample per test: the samples are the tests, as independent as they come.
        if most > 1:
            independent = rate_a * (1 - rate_a) / samples_a + rate_b * (1 - rate_b) / samples_b
            effect = spread / tests / independent if independent > 0 else 1.0
            effect, z = min(max(effect, 1.0), float(most)), t
    effective_a, effective_b = samples_a / effect, samples_b / effect
    low, high = difference_interval(
        rate_a,
        wilson_interval(rate_a * effective_a, effective_a, z),
        rate_b,
        wilson_interval(rate_b * effective_b, effective_b, z),
    )
    return Paired(
        rate_a, rate_b, low, high, tests, samples_a, samples_b, effect, spread, paired_t, these
    )


def tests_needed(paired: Paired, lift: float, samples: float) -> int | None:
    """How many tests of `samples` samples per arm would detect `lift` with 80% power at
    two-sided 5%, from the spread `paired` observed: the per-test variance of the difference is
    tau^2 + w / samples, w = p_a (1 - p_a) + p_b (1 - p_b), and tau^2 what the observed spread
    leaves over the samples' own noise (normal quantiles: z_0.975 + z_0.8). None when there is
    no lift to plan for, or under two tests (no spread to plan from)."""
    if lift == 0 or paired.tests < 2 or samples <= 0:
        return None
    a, b = paired.rate_a, paired.rate_b
    within = a * (1 - a) + b * (1 - b)
    observed = (paired.samples_a + paired.samples_b) / (2 * paired.tests)
    between = max(0.0, paired.spread - within / observed)
    variance = between + within / samples
    # At least 5: the normal approximation undercounts a handful of tests (t on few degrees of
    # freedom), and the report calls fewer than 5 too few to show a lift over tasks.
    needed = (Z95 + Z80) ** 2 * variance / (lift * lift)
    return max(5, math.ceil(needed - 1e-9))
