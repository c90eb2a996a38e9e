"""How often the pass rate's 95% interval covers the rate over tests, and how wide it is: the
old interval (Wilson over every sample, as if independent) against the new one (Wilson at the
effective sample size, t on T - 1 degrees of freedom: `report.stats.clustered_rate`), in one
run, on a grid of tests x samples per test x within-test correlation.

Each test's pass probability is drawn from a Beta with mean 0.6 whose spread gives the
within-test correlation rho (the intraclass correlation of a beta-binomial); the rate to cover
is 0.6, the rate over the population of tests the suite samples.
Usage: python benchmarks/coverage.py [--repeats 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random

from pytest_upskill.report.stats import clustered_rate, wilson_interval

MEAN = 0.6
TESTS = (1, 3, 5, 10, 20)
SAMPLES = (1, 5, 10, 30)
RHOS = (0.05, 0.3, 0.7)


def _cell(tests: int, samples: int, rho: float, repeats: int, rng: random.Random) -> list[float]:
    """Coverage and mean width, old then new."""
    a, b = MEAN * (1 / rho - 1), (1 - MEAN) * (1 / rho - 1)
    covered = [0, 0]
    width = [0.0, 0.0]
    for _ in range(repeats):
        counts = []
        for _ in range(tests):
            p = rng.betavariate(a, b)
            counts.append((sum(rng.random() < p for _ in range(samples)), samples))
        passed = sum(c for c, _ in counts)
        old = wilson_interval(passed, tests * samples)
        new = clustered_rate(counts)
        for i, (low, high) in enumerate((old, (new.low, new.high))):
            covered[i] += low <= MEAN <= high
            width[i] += high - low
    return [covered[0] / repeats, width[0] / repeats, covered[1] / repeats, width[1] / repeats]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    print("tests samples  rho   old: cover  width   new: cover  width")
    worst: tuple[float, str] = (1.0, "")
    narrower = []
    for tests in TESTS:
        for samples in SAMPLES:
            for rho in RHOS:
                old_cover, old_width, new_cover, new_width = _cell(
                    tests, samples, rho, options.repeats, rng
                )
                where = f"{tests:5d} {samples:7d} {rho:5.2f}"
                old = f"{old_cover:.3f}  {old_width:.3f}"
                print(f"{where}       {old}        {new_cover:.3f}  {new_width:.3f}")
                if tests >= 5 and new_cover < worst[0]:
                    worst = (new_cover, where)
                if samples == 1 and new_width < old_width - 1e-9:
                    narrower.append(where)
    print(
        f"worst new coverage with 5 or more tests: {worst[0]:.3f} at {worst[1].split()} "
        "(tests, samples, rho); target >= 0.93"
    )
    print(
        f"cells with one sample per test where the new interval is narrower: {narrower or 'none'}"
    )


if __name__ == "__main__":
    main()
