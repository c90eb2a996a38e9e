"""The report's statistics against statsmodels and scipy, on a grid: the same formulas, computed
by libraries that many people check."""

from __future__ import annotations

import itertools
import statistics

import pytest
from scipy.stats import norm, t  # type: ignore[import-untyped]
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportion_confint,
)
from statsmodels.stats.weightstats import DescrStatsW  # type: ignore[import-untyped]

from pytest_upskill.report.stats import (
    Z80,
    Z95,
    clustered_rate,
    newcombe_interval,
    paired_difference,
    t_quantile,
    wilson_interval,
)

COUNTS = [
    (passed, n) for n in (1, 2, 5, 10, 37, 100) for passed in sorted({0, 1, n // 3, n - 1, n})
]


@pytest.mark.parametrize(("passed", "n"), COUNTS)
def test_wilson_interval(passed: int, n: int) -> None:
    expected = proportion_confint(passed, n, alpha=0.05, method="wilson")
    assert wilson_interval(passed, n) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("a", "b"), list(itertools.product([(0, 5), (3, 10), (10, 10), (56, 70)], repeat=2))
)
def test_newcombe_interval(a: tuple[int, int], b: tuple[int, int]) -> None:
    expected = confint_proportions_2indep(
        a[0], a[1], b[0], b[1], method="newcomb", compare="diff", alpha=0.05
    )
    assert newcombe_interval(a[0], a[1], b[0], b[1]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10, 29, 30, 100, 2.5])
@pytest.mark.parametrize("probability", [0.5, 0.9, 0.975, 0.995])
def test_t_quantile(probability: float, df: float) -> None:
    assert t_quantile(probability, df) == pytest.approx(t.ppf(probability, df), abs=1e-6)


# Per test ((passed, n) of arm a, (passed, n) of arm b): a skill that helps some tests and hurts
# others; one that helps every test by about as much; unequal counts per test.
PAIRED = [
    [((8, 10), (2, 10)), ((2, 10), (8, 10)), ((9, 10), (5, 10)), ((7, 10), (5, 10))],
    [((6, 10), (4, 10)), ((7, 10), (5, 10)), ((9, 10), (6, 10)), ((3, 10), (2, 10))],
    [((4, 5), (1, 3)), ((2, 8), (3, 10)), ((6, 6), (5, 7)), ((1, 4), (0, 2)), ((3, 9), (4, 9))],
]


@pytest.mark.parametrize("counts", PAIRED)
def test_paired_t_interval(counts: list[tuple[tuple[int, int], tuple[int, int]]]) -> None:
    differences = [a / n_a - b / n_b for (a, n_a), (b, n_b) in counts]
    paired = paired_difference(counts)
    expected = DescrStatsW(differences).tconfint_mean(alpha=0.05)
    assert paired.paired_t == pytest.approx(expected, abs=1e-6)
    assert paired.spread == pytest.approx(statistics.variance(differences))


@pytest.mark.parametrize("counts", PAIRED)
def test_paired_lift_interval(counts: list[tuple[tuple[int, int], tuple[int, int]]]) -> None:
    """Newcombe's interval of the two arms at their effective sizes, at the t quantile's level."""
    paired = paired_difference(counts)
    q = t_quantile(0.975, paired.tests - 1)
    effect = paired.design_effect
    expected = confint_proportions_2indep(
        paired.rate_a * paired.samples_a / effect,
        paired.samples_a / effect,
        paired.rate_b * paired.samples_b / effect,
        paired.samples_b / effect,
        method="newcomb",
        compare="diff",
        alpha=2 * (1 - norm.cdf(q)),
    )
    assert (paired.low, paired.high) == pytest.approx(expected, abs=1e-6)
    pooled = [sum(arm[0] for arm in arms) for arms in zip(*counts, strict=True)]
    samples = [sum(arm[1] for arm in arms) for arms in zip(*counts, strict=True)]
    these = confint_proportions_2indep(
        pooled[0], samples[0], pooled[1], samples[1], method="newcomb", compare="diff"
    )
    assert paired.these_tests == pytest.approx(these, abs=1e-6)


CLUSTERS = [
    [(10, 10), (0, 10), (10, 10)],
    [(3, 10), (5, 10), (6, 10), (9, 10), (4, 10)],
    [(1, 4), (7, 9), (2, 2), (5, 12)],
    [(5, 10), (6, 10), (5, 10), (4, 10), (5, 10), (6, 10)],  # less spread than chance: D = 1
]


@pytest.mark.parametrize("counts", CLUSTERS)
def test_clustered_rate_interval(counts: list[tuple[int, int]]) -> None:
    rate = clustered_rate(counts)
    q = t_quantile(0.975, rate.tests - 1)
    effective = rate.samples / rate.design_effect
    expected = proportion_confint(
        count=rate.rate * effective,
        nobs=effective,
        alpha=2 * (1 - norm.cdf(q)),
        method="wilson",
    )
    assert (rate.low, rate.high) == pytest.approx(expected, abs=1e-6)


def test_the_normal_quantiles() -> None:
    assert (norm.ppf(0.975), norm.ppf(0.8)) == pytest.approx((Z95, Z80), abs=1e-6)
