"""What a skill does to a model's pass rate: its lift over the baseline, and the difference
between two skills, each paired test by test over the tests both arms counted samples on
(`stats.paired_difference`), with the tests left out named and a plan of how many tests would
show a lift of that size.

It reads per-test counts (`results.counts_by_test`), not records, so `results` can build its
`Statistics` from these rows without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .stats import Paired, clustered_rate, difference_interval, paired_difference, tests_needed

if TYPE_CHECKING:
    from .results import SummaryRow

__all__ = ["ComparisonRow", "Counts", "LiftRow", "comparisons", "lift"]

# (model, condition) -> test -> (passed, counted samples), merged over parameter sets.
Counts = Mapping[tuple[str, str], Mapping[str, tuple[int, int]]]


class _OverTests(BaseModel):
    """What a difference over tests rests on; the lift and comparison rows share these."""

    tests: int = 0  # with counted samples in both arms; 0: from summary rows, not paired
    samples_per_test: float = 0.0  # counted samples per test and arm, the mean of both arms
    # How many samples count as one independent draw of the difference over tests (>= 1).
    design_effect: float = 1.0
    # The textbook paired t interval of the per-test differences; None under two tests.
    paired_t_low: float | None = None
    paired_t_high: float | None = None
    # Newcombe's interval over the pooled samples, as if independent: it holds for these
    # tests only, not for the tasks they stand for.
    these_tests_low: float | None = None
    these_tests_high: float | None = None
    # Tests out of the difference: run by one arm only, or (also in `dropped_uncounted`) run by
    # both with no counted sample in one (all errors or skips).
    dropped_tests: list[str] = []
    dropped_uncounted: list[str] = []


class LiftRow(_OverTests):
    """What a skill does to one model's pass rate: the difference with its 95% interval."""

    model: str
    skill: str
    baseline_rate: float
    skill_rate: float
    lift: float
    ci_low: float
    ci_high: float
    evidence: bool  # the interval leaves 0 out
    # Why there is no lift to speak of: an arm without a counted sample on the shared tests.
    no_lift: str = ""
    # How many tests at `plan_samples` samples per test (and at twice that) would detect
    # `plan_lift` with 80% power at two-sided 5%, from the spread observed; None when there is
    # no lift to plan for.
    plan_lift: float | None = None
    plan_samples: int = 0
    plan_tests: int | None = None
    plan_tests_doubled: int | None = None


class ComparisonRow(_OverTests):
    """Two skills on one model (say two versions of one skill): `second` - `first`, with its
    95% interval, on the tests both counted samples on."""

    model: str
    first: str
    second: str
    first_rate: float
    second_rate: float
    difference: float
    ci_low: float
    ci_high: float
    evidence: bool  # the interval leaves 0 out


@dataclass(frozen=True)
class _Pairing:
    paired: Paired | None  # None: no test with counted samples in both arms
    rates: tuple[float, float]  # arm a's and arm b's, over the tests both counted on
    empty: bool  # neither arm counted a sample on the tests both ran
    missing: str  # why there is no difference to speak of, when `paired` is None
    fields: dict[str, Any]  # the interval, the evidence and the `_OverTests` fields


def _pairing(
    a: Mapping[str, tuple[int, int]], b: Mapping[str, tuple[int, int]], names: tuple[str, str]
) -> _Pairing:
    """Arm a against arm b over the tests both counted samples on."""
    common = a.keys() & b.keys()
    kept = sorted(test for test in common if a[test][1] and b[test][1])
    dropped = {
        "dropped_tests": sorted((a.keys() | b.keys()) - set(kept)),
        "dropped_uncounted": sorted(common - set(kept)),
    }
    if not kept:  # an arm with nothing counted: nothing is known
        arms = [clustered_rate([arm[test] for test in common]) for arm in (a, b)]
        empty = [name for name, arm in zip(names, arms, strict=True) if not arm.samples]
        both = f"both the {names[1]} and the {names[0]}"
        if not common:
            missing = f"no test ran under {both}"
        elif empty:
            missing = (
                f"the {' and the '.join(reversed(empty))} counted no sample on the tests both "
                "ran (all errors or skips)"
            )
        else:
            missing = f"no test has counted samples under {both} (errors or skips left the rest)"
        unknown = {"ci_low": -1.0, "ci_high": 1.0, "evidence": False, **dropped}
        return _Pairing(None, (arms[0].rate, arms[1].rate), len(empty) == 2, missing, unknown)
    paired = paired_difference([(a[test], b[test]) for test in kept])
    t = paired.paired_t
    fields = {
        "ci_low": round(paired.low, 4),
        "ci_high": round(paired.high, 4),
        "evidence": paired.low > 0 or paired.high < 0,
        "tests": paired.tests,
        "samples_per_test": round((paired.samples_a + paired.samples_b) / (2 * paired.tests), 4),
        "design_effect": round(paired.design_effect, 4),
        "paired_t_low": None if t is None else round(t[0], 4),
        "paired_t_high": None if t is None else round(t[1], 4),
        "these_tests_low": round(paired.these_tests[0], 4),
        "these_tests_high": round(paired.these_tests[1], 4),
        **dropped,
    }
    return _Pairing(paired, (paired.rate_a, paired.rate_b), False, "", fields)


def _plan(paired: Paired | None, observed: float, min_lift: float | None) -> dict[str, Any]:
    """How many tests would show the `observed` lift (or `min_lift`, when positive): at the
    samples per test of this run, and at twice that."""
    if paired is None or paired.tests < 2:
        return {}
    target = min_lift if min_lift is not None and min_lift > 0 else observed
    samples = max(1, round((paired.samples_a + paired.samples_b) / (2 * paired.tests)))
    return {
        "plan_lift": round(target, 6),
        "plan_samples": samples,
        "plan_tests": tests_needed(paired, target, samples),
        "plan_tests_doubled": tests_needed(paired, target, 2 * samples),
    }


def _unpaired(row: SummaryRow, base: SummaryRow) -> LiftRow:
    """From the summary rows alone (no per-test counts): each arm's interval, as if the two
    were independent."""
    empty = [name for name, arm in (("baseline", base), ("skill", row)) if not arm.n]
    interval = (-1.0, 1.0)  # an arm with nothing counted: nothing is known
    if not empty:
        interval = difference_interval(
            row.pass_rate, (row.ci_low, row.ci_high), base.pass_rate, (base.ci_low, base.ci_high)
        )
    return LiftRow(
        model=row.model,
        skill=row.condition,
        baseline_rate=base.pass_rate,
        skill_rate=row.pass_rate,
        lift=round(row.pass_rate - base.pass_rate, 6),
        ci_low=round(interval[0], 4),
        ci_high=round(interval[1], 4),
        evidence=not empty and (interval[0] > 0 or interval[1] < 0),
        no_lift=f"the {' and the '.join(empty)} counted no sample (all errors or skips)"
        if empty
        else "",
    )


def lift(
    summary: list[SummaryRow],
    baseline: str = "baseline",
    counts: Counts | None = None,
    min_lift: float | None = None,
) -> list[LiftRow]:
    """Each skill against the baseline of the same model. With `counts` (as
    `results.counts_by_test` gives them), paired test by test over the tests both counted
    samples on: a skill that owns upskill test cases runs only those. Without, from the summary
    rows alone. With `min_lift`, the plan is for that lift rather than the observed one."""
    baselines = {row.model: row for row in summary if row.condition == baseline}
    rows = []
    for row in summary:
        base = baselines.get(row.model)
        if row.condition == baseline or base is None:
            continue
        if counts is None:
            rows.append(_unpaired(row, base))
            continue
        pairing = _pairing(
            counts.get((row.model, row.condition), {}),
            counts.get((row.model, baseline), {}),
            ("skill", "baseline"),
        )
        skill_rate, baseline_rate = (round(rate, 6) for rate in pairing.rates)
        difference = round(skill_rate - baseline_rate, 6)
        rows.append(
            LiftRow(
                model=row.model,
                skill=row.condition,
                baseline_rate=baseline_rate,
                skill_rate=skill_rate,
                lift=difference,
                no_lift=pairing.missing,
                **pairing.fields,
                **_plan(pairing.paired, difference, min_lift),
            )
        )
    return rows


def comparisons(
    counts: Counts, summary: list[SummaryRow], baseline: str = "baseline"
) -> list[ComparisonRow]:
    """Every pair of skills on each model, the later condition against the earlier one, paired
    test by test as the lift is."""
    rows = []
    for model in dict.fromkeys(row.model for row in summary):
        skills = [r.condition for r in summary if r.model == model and r.condition != baseline]
        for i, first in enumerate(skills):
            for second in skills[i + 1 :]:
                pairing = _pairing(
                    counts.get((model, second), {}),
                    counts.get((model, first), {}),
                    (second, first),
                )
                if pairing.empty:
                    continue  # no test ran both with a counted sample: nothing to compare
                second_rate, first_rate = (round(rate, 6) for rate in pairing.rates)
                rows.append(
                    ComparisonRow(
                        model=model,
                        first=first,
                        second=second,
                        first_rate=first_rate,
                        second_rate=second_rate,
                        difference=round(second_rate - first_rate, 6),
                        **pairing.fields,
                    )
                )
    return rows
