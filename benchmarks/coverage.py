"""How often the 95% intervals of the report cover what they claim to, and how wide they are, on
a grid of tests x samples per test x within-test correlation, old against new in one run:

- the pass rate: Wilson over every sample, as if independent (old), against Wilson at the
  effective sample size with t on T - 1 degrees of freedom (new: `report.stats.clustered_rate`);
- the lift: Newcombe over the pooled samples (old) against the paired difference over tests
  (new: `report.stats.paired_difference`).

Each test's baseline pass probability q is drawn from a Beta with mean 0.6 whose spread gives
the within-test correlation rho (the intraclass correlation of a beta-binomial); the rate to
cover is 0.6, the rate over the population of tests the suite samples. The skill helps some
tests and hurts others: its probability is q + u min(q, 1 - q), u uniform on [-1, 1], so it
stays in [0, 1] and the true lift over the population of tests is exactly 0. A lift interval
that leaves 0 out claims a lift (or a drop) that is not there: nominally 2.5% a side.
Usage: python benchmarks/coverage.py [--repeats 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import random
from dataclasses import dataclass, field

from pytest_upskill.report.stats import (
    clustered_rate,
    newcombe_interval,
    paired_difference,
    wilson_interval,
)

MEAN = 0.6
TESTS = (1, 3, 5, 10, 20)
SAMPLES = (1, 5, 10, 30)
RHOS = (0.05, 0.3, 0.7)


@dataclass
class _Tally:
    """Coverage, width and claims of one interval over the repeats of one cell."""

    covered: int = 0
    width: float = 0.0
    above: int = 0  # the interval lies above the truth: for the lift, a claimed lift
    below: int = 0

    def add(self, interval: tuple[float, float], truth: float) -> None:
        low, high = interval
        self.covered += low <= truth <= high
        self.width += high - low
        self.above += low > truth
        self.below += high < truth


@dataclass
class _Cell:
    rate: list[_Tally] = field(default_factory=lambda: [_Tally(), _Tally()])  # old, new
    lift: list[_Tally] = field(default_factory=lambda: [_Tally(), _Tally()])


def _passed(p: float, samples: int, rng: random.Random) -> int:
    return sum(rng.random() < p for _ in range(samples))


def _cell(tests: int, samples: int, rho: float, repeats: int, rng: random.Random) -> _Cell:
    a, b = MEAN * (1 / rho - 1), (1 - MEAN) * (1 / rho - 1)
    cell = _Cell()
    for _ in range(repeats):
        pairs = []
        for _ in range(tests):
            q = rng.betavariate(a, b)
            skill = q + rng.uniform(-1, 1) * min(q, 1 - q)
            pairs.append(
                ((_passed(skill, samples, rng), samples), (_passed(q, samples, rng), samples))
            )
        base = [pair[1] for pair in pairs]
        old_rate = wilson_interval(sum(c for c, _ in base), tests * samples)
        new_rate = clustered_rate(base)
        cell.rate[0].add(old_rate, MEAN)
        cell.rate[1].add((new_rate.low, new_rate.high), MEAN)
        n = tests * samples
        old_lift = newcombe_interval(sum(c for (c, _), _ in pairs), n, sum(c for c, _ in base), n)
        new_lift = paired_difference(pairs)
        cell.lift[0].add(old_lift, 0.0)
        cell.lift[1].add((new_lift.low, new_lift.high), 0.0)
    return cell


def main() -> None:
    parser = argparse.ArgumentParser()
    # 20000 repeats: under 2 minutes on two cores; each coverage within about +-0.003 (95%).
    parser.add_argument("--repeats", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    repeats = options.repeats
    print(
        "                    rate (truth 0.6)               lift (truth 0, claims: low > 0)\n"
        "tests samples  rho   old: cover width  new: cover width  "
        "old: cover width claims  new: cover width claims"
    )
    # (value, cell) per interval: the worst coverage with 5 or more tests, the most claims.
    worst = {key: (1.0, "") for key in itertools.product(("rate", "lift"), ("old", "new"))}
    claims = {age: (0.0, "") for age in ("old", "new")}
    narrower: dict[str, list[str]] = {"rate": [], "lift": []}
    for tests in TESTS:
        for samples in SAMPLES:
            for rho in RHOS:
                cell = _cell(tests, samples, rho, repeats, rng)
                where = f"{tests:5d} {samples:7d} {rho:5.2f}"
                columns = [
                    f"{t.covered / repeats:.3f} {t.width / repeats:.3f}" for t in cell.rate
                ] + [
                    f"{t.covered / repeats:.3f} {t.width / repeats:.3f} {t.above / repeats:.3f}"
                    for t in cell.lift
                ]
                print(f"{where}    " + "    ".join(columns))
                if samples == 1:
                    for name, (old, new) in (("rate", cell.rate), ("lift", cell.lift)):
                        if new.width < old.width - 1e-9 * repeats:
                            narrower[name].append(where)
                if tests < 5:
                    continue
                for name, tallies in (("rate", cell.rate), ("lift", cell.lift)):
                    for age, tally in zip(("old", "new"), tallies, strict=True):
                        worst[name, age] = min(worst[name, age], (tally.covered / repeats, where))
                for age, tally in zip(("old", "new"), cell.lift, strict=True):
                    claims[age] = max(claims[age], (tally.above / repeats, where))
    print("with 5 or more tests (cells as tests, samples, rho):")
    for (name, age), (cover, where) in worst.items():
        print(f"  worst {age} {name} coverage: {cover:.3f} at {where.split()}")
    for age, (rate, where) in claims.items():
        print(f"  most {age} claims of a lift that is not there: {rate:.3f} at {where.split()}")
    print("  target: new coverage >= 0.93; claims nominally 0.025")
    for name in ("rate", "lift"):
        print(
            f"cells with one sample per test where the new {name} interval is narrower: "
            f"{narrower[name] or 'none'}"
        )


if __name__ == "__main__":
    main()
