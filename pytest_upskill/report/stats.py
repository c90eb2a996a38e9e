"""The statistics of pass rates: Wilson intervals, Newcombe's interval for a difference, pass@k;
and the means the summary rows hold."""

from __future__ import annotations

import math

__all__ = ["Z95", "geomean", "mean", "newcombe_interval", "pass_at_k", "wilson_interval"]

Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


def wilson_interval(passed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95% Wilson score interval of a pass rate; (0, 1) when there is no sample."""
    if n == 0:
        return 0.0, 1.0
    rate = passed / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    passed_a: int, n_a: int, passed_b: int, n_b: int, z: float = Z95
) -> tuple[float, float]:
    """The 95% interval of rate a - rate b for independent samples: Newcombe's hybrid score
    method (method 10 of Newcombe 1998), built from the two Wilson intervals."""
    rate_a = passed_a / n_a if n_a else 0.0
    rate_b = passed_b / n_b if n_b else 0.0
    low_a, high_a = wilson_interval(passed_a, n_a, z)
    low_b, high_b = wilson_interval(passed_b, n_b, z)
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
