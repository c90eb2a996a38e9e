from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_upskill.report.json import write_json_report
from pytest_upskill.report.lift import lift
from pytest_upskill.report.results import (
    SampleRecord,
    counts_by_test,
    gate_failures,
    merge_parameter_sets,
    statistics,
    summarize,
    summarize_by_test,
)
from pytest_upskill.report.sections import Table, report_sections
from pytest_upskill.report.stats import newcombe_interval, pass_at_k, t_quantile, wilson_interval
from pytest_upskill.report.tables import comparison_line, lift_line
from pytest_upskill.report.terminal import summary_table


@pytest.mark.parametrize(
    ("passed", "n", "low", "high"),
    # Reference values from the Wilson score formula with z = 1.96; no sample: the whole range.
    [
        (0, 0, 0.0, 1.0),
        (1, 1, 0.2065, 1.0),
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (81, 100, 0.7222, 0.8749),
    ],
)
def test_wilson_interval(passed: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(passed, n) == pytest.approx((low, high), abs=1e-4)


def _record(condition: str, outcome: str, index: int) -> SampleRecord:
    return SampleRecord.model_validate(
        {
            "nodeid": f"t.py::t[{index}]",
            "test": "t",
            "model": "oracle",
            "condition": condition,
            "sample": index,
            "outcome": outcome,
            "stage": "check",
            "built": outcome != "error",
        }
    )


def test_summary_leaves_errors_and_skips_out_of_the_rate() -> None:
    records = [
        _record("baseline", outcome, i)
        for i, outcome in enumerate(["passed", "failed", "error", "skipped", "passed"])
    ] + [_record("cpu-kernels", "passed", 0)]
    baseline, skill = summarize(records)
    assert (baseline.n, baseline.passed, baseline.errors, baseline.skipped) == (3, 2, 1, 1)
    assert baseline.pass_rate == pytest.approx(2 / 3)
    assert baseline.built == 4
    assert (skill.condition, skill.n, skill.pass_rate) == ("cpu-kernels", 1, 1.0)


@pytest.mark.parametrize(
    ("a", "n_a", "b", "n_b", "low", "high"),
    [
        # Newcombe (1998), Table II, example (a): 56/70 - 48/80, method 10.
        (56, 70, 48, 80, 0.0524, 0.3339),
        # By hand from the Wilson intervals (0.7225, 1) and (0, 0.2775): rates of 1 and 0.
        (10, 10, 0, 10, 1 - 2**0.5 * 0.27753, 1.0),
        (0, 10, 0, 10, -0.2775, 0.2775),
    ],
)
def test_newcombe_interval(a: int, n_a: int, b: int, n_b: int, low: float, high: float) -> None:
    assert newcombe_interval(a, n_a, b, n_b) == pytest.approx((low, high), abs=1e-4)


def test_newcombe_interval_without_samples_is_the_widest() -> None:
    assert newcombe_interval(0, 0, 0, 0) == (-1.0, 1.0)


@pytest.mark.parametrize(
    ("n", "passed", "k", "expected"),
    # 1 - C(n - c, k) / C(n, k), by hand: C(7, 5) / C(10, 5) = 21 / 252.
    [(5, 1, 1, 0.2), (5, 1, 2, 0.4), (5, 0, 3, 0.0), (5, 5, 1, 1.0), (10, 3, 5, 1 - 21 / 252)],
)
def test_pass_at_k(n: int, passed: int, k: int, expected: float) -> None:
    assert pass_at_k(n, passed, k) == pytest.approx(expected)


def test_pass_at_k_needs_k_within_the_samples() -> None:
    with pytest.raises(ValueError, match="pass@3 needs 1 <= k <= n = 2"):
        pass_at_k(2, 1, 3)


def _sample(test: str, condition: str, outcome: str, index: int, **fields: object) -> SampleRecord:
    return SampleRecord.model_validate(
        {
            "nodeid": f"t.py::{test}[{condition}-{index}]",
            "test": test,
            "model": "m",
            "condition": condition,
            "sample": index,
            "outcome": outcome,
            "stage": "check",
            **fields,
        }
    )


def test_pass_at_k_is_averaged_over_tests_and_lift_says_when_there_is_no_evidence() -> None:
    records = [
        # test a: baseline 1 of 2, skill 2 of 2; test b: baseline 0 of 3, skill 3 of 3.
        _sample("a", "baseline", "passed", 0, usage={"input_tokens": 10, "output_tokens": 4}),
        _sample("a", "baseline", "failed", 1, usage={"input_tokens": 20, "output_tokens": 8}),
        *(_sample("b", "baseline", "failed", i) for i in range(3)),
        *(_sample("a", "skill", "passed", i, cost_usd=0.5) for i in range(2)),
        *(_sample("b", "skill", "passed", i) for i in range(3)),
        _sample("b", "skill", "error", 3),
    ]
    baseline, skill = summarize(records)
    # k goes up to the fewest samples a test has (2); test a: pass@1 = 1/2, pass@2 = 1; b: 0, 0.
    assert baseline.pass_at_k == {"1": 0.25, "2": 0.5}
    assert skill.pass_at_k == {"1": 1.0, "2": 1.0}
    assert (baseline.mean_input_tokens, baseline.mean_output_tokens) == (6.0, 2.4)
    assert (baseline.mean_cost_usd, skill.mean_cost_usd) == (None, 0.5)
    # The rate is the mean of the per-test rates: pass@1, whatever the counts per test.
    assert baseline.pass_rate == baseline.pass_at_k["1"]
    (row,) = lift([baseline, skill])
    assert (row.skill, row.baseline_rate, row.skill_rate, row.lift) == ("skill", 0.25, 1.0, 0.75)
    # Two tests say little about the rate over tests (t on one degree of freedom).
    assert row.ci_low < 0
    assert not row.evidence
    (same,) = lift([baseline, baseline.model_copy(update={"condition": "other"})])
    assert (same.lift, same.evidence) == (0.0, False)
    by_test = summarize_by_test(records)
    assert [(r.test, r.condition, r.passed, r.n) for r in by_test] == [
        ("a", "baseline", 1, 2),
        ("a", "skill", 2, 2),
        ("b", "baseline", 0, 3),
        ("b", "skill", 3, 3),
    ]


def test_gates_name_what_missed() -> None:
    records = [_sample("a", "baseline", "passed", 0), _sample("a", "skill", "failed", 0)]
    summary = summarize(records)
    assert gate_failures(summary, fail_under=0.5, min_lift=None) == [
        "m skill: pass rate 0% (the point estimate) is under --upskill-fail-under=0.5"
    ]
    assert gate_failures(summary, fail_under=None, min_lift=0.0) == [
        "m skill: lift -100%, whose 95% interval's lower bound -100% is under --upskill-min-lift=0"
    ]
    assert gate_failures(summary, fail_under=0.0, min_lift=-1.0) == []


def test_the_lift_gate_holds_its_lower_bound_to_the_threshold() -> None:
    """A lift measured at the threshold (its point estimate there) passes only if the
    interval's lower bound reaches it: with 10 samples an arm it does not."""
    records = [_sample("a", "baseline", "passed" if i < 3 else "failed", i) for i in range(10)]
    records += [_sample("a", "skill", "passed" if i < 6 else "failed", i) for i in range(10)]
    summary = summarize(records)
    (row,) = lift(summary)
    assert row.lift == pytest.approx(0.3)
    assert row.ci_low < 0.3
    (failure,) = gate_failures(summary, fail_under=None, min_lift=0.3)
    assert failure.startswith("m skill: lift +30%, whose 95% interval's lower bound ")


def test_an_all_error_baseline_gives_no_lift_and_fails_the_gates() -> None:
    """Every baseline sample an error (the provider failed): the baseline counts 0 samples, and
    a skill at 6/10 got a lift of +60% that passed --upskill-min-lift=0.3."""
    records = [_sample("a", "baseline", "error", i) for i in range(10)]
    records += [_sample("a", "skill", "passed" if i < 6 else "failed", i) for i in range(10)]
    records += [_sample("a", "other", "error", i) for i in range(10)]
    summary = summarize(records)
    rows = {row.skill: row for row in lift(summary, counts=counts_by_test(records))}
    assert rows["skill"].no_lift == (
        "the baseline counted no sample on the tests both ran (all errors or skips)"
    )
    assert (rows["skill"].evidence, rows["skill"].ci_low, rows["skill"].ci_high) == (False, -1, 1)
    assert lift_line(rows["skill"]) == (
        "lift m skill vs baseline: none: the baseline counted no sample on the tests both ran "
        "(all errors or skips)"
    )
    assert gate_failures(summary, fail_under=0.5, min_lift=0.3, lifts=list(rows.values())) == [
        "m other: no counted sample (all errors or skips), so no pass rate to hold to "
        "--upskill-fail-under=0.5",
        "m skill: no lift to hold to --upskill-min-lift=0.3: the baseline counted no sample on "
        "the tests both ran (all errors or skips)",
        "m other: no lift to hold to --upskill-min-lift=0.3: the baseline and the skill counted "
        "no sample on the tests both ran (all errors or skips)",
    ]


def test_a_sample_run_over_several_parameter_sets_counts_once() -> None:
    def item(params: str, outcome: str, index: int = 0) -> SampleRecord:
        record = _sample("t", "baseline", outcome, index, built=True)
        return record.model_copy(update={"nodeid": f"t.py::t[m-baseline-{index}-{params}]"})

    records = [
        item("shape0", "passed"),
        item("shape1", "failed"),  # sample 0 fails on one shape: the sample failed
        item("shape2", "error"),
        item("shape0", "passed", 1),
        item("shape1", "skipped", 1),  # sample 1 passed what ran
        item("shape0", "error", 2),
        item("shape1", "skipped", 2),  # sample 2: nothing ran for sure
    ]
    merged = merge_parameter_sets(records)
    assert [(r.sample, r.outcome) for r in merged] == [(0, "failed"), (1, "passed"), (2, "error")]
    (row,) = summarize(records)
    assert (row.n, row.passed, row.errors, row.built) == (2, 1, 1, 3)


def test_samples_of_one_test_count_less_than_samples_of_many() -> None:
    """3 tests x 10 samples passing 100%, 0% and 100%: the old interval (every sample
    independent) was [48%, 81%], 0.32 wide; over tests it is far wider, and the report says
    there is no inference beyond these tests' spread."""
    records = [
        _sample(test, "baseline", "passed" if test != "b" else "failed", i)
        for test in ("a", "b", "c")
        for i in range(10)
    ]
    (row,) = summarize(records)
    assert (row.tests, row.n, row.design_effect) == (3, 30, 10.0)  # clipped: 10 per test
    assert row.pass_rate == pytest.approx(2 / 3)
    assert row.ci_high - row.ci_low >= 0.6
    stats = statistics(records)
    summary = report_sections(stats)[0]
    assert isinstance(summary, Table)
    (note,) = [n for n in summary.notes if n.startswith("m baseline")]
    assert note == (
        f"m baseline: 67% [{row.ci_low:.0%}, {row.ci_high:.0%}] over 3 tests x 10 samples "
        "(design effect 10.0: 30 samples count as 3); fewer than 5 tests: no inference beyond "
        "these tests' spread; more tests will help more than more samples"
    )


def test_one_sample_per_test_keeps_the_wilson_interval() -> None:
    records = [_sample(f"t{i}", "baseline", "passed" if i % 3 else "failed", 0) for i in range(12)]
    (row,) = summarize(records)
    assert (row.ci_low, row.ci_high) == pytest.approx(wilson_interval(8, 12), abs=1e-4)
    assert row.design_effect == 1.0


@pytest.mark.parametrize(
    ("df", "quantile"),
    [(1, 12.706205), (2, 4.302653), (4, 2.776445), (10, 2.228139), (30, 2.042272)],
)
def test_t_quantile(df: int, quantile: float) -> None:
    """Student's t, 97.5%: the values of every table (scipy.stats.t.ppf)."""
    assert t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-6)


def _runs(condition: str, passed: dict[str, int], samples: int = 10) -> list[SampleRecord]:
    """`samples` samples of each test under `condition`, the first `passed[test]` passing."""
    return [
        _sample(test, condition, "passed" if i < count else "failed", i)
        for test, count in passed.items()
        for i in range(samples)
    ]


# A skill that helps tests a, c and d and hurts test b: 10 samples a test and arm.
MIXED = _runs("baseline", {"a": 2, "b": 8, "c": 5, "d": 5}) + _runs(
    "skill", {"a": 8, "b": 2, "c": 9, "d": 7}
)


def test_a_skill_that_helps_some_tests_and_hurts_others_shows_no_lift() -> None:
    """The pooled samples (the old interval) call +15 points almost a lift; over tests the
    differences +60, -60, +40, +20 points spread too far for 4 tests to say anything."""
    (row,) = statistics(MIXED).lift
    assert (row.baseline_rate, row.skill_rate, row.lift) == (0.5, 0.65, 0.15)
    assert (row.tests, row.samples_per_test, row.dropped_tests) == (4, 10.0, [])
    old = newcombe_interval(26, 40, 20, 40)
    assert (row.these_tests_low, row.these_tests_high) == pytest.approx(old, abs=1e-4)
    assert row.ci_high - row.ci_low > 2 * (old[1] - old[0])
    assert row.ci_low < old[0]
    assert row.ci_high > old[1]
    assert not row.evidence
    # var(d) = (0.45^2 + 0.75^2 + 0.25^2 + 0.05^2) / 3 = 0.27667, over T = 4; independent
    # samples: 0.65 * 0.35 / 40 + 0.5 * 0.5 / 40 = 0.0119375; D = 0.0691667 / 0.0119375.
    assert row.design_effect == pytest.approx(5.7941, abs=1e-4)
    # The textbook paired t: 0.15 +- t(0.975, 3) sqrt(0.27667 / 4).
    half = t_quantile(0.975, 3) * (0.2766667 / 4) ** 0.5
    assert (row.paired_t_low, row.paired_t_high) == pytest.approx(
        (0.15 - half, 0.15 + half), abs=1e-4
    )
    assert lift_line(row) == (
        f"lift m skill vs baseline: +15 pts [{row.ci_low * 100:+.0f}, {row.ci_high * 100:+.0f}] "
        "over 4 tests x 10 samples (design effect 5.8): no evidence of lift; fewer than 5 "
        "tests: too few to show a lift over tasks; more tests will help more than more samples"
    )


def test_the_plan_says_how_many_tests_would_show_the_lift() -> None:
    """By hand: w = 0.65 * 0.35 + 0.5 * 0.5 = 0.4775; tau^2 = 0.27667 - 0.4775 / 10 = 0.22892;
    (1.959964 + 0.841621)^2 = 7.84888. At 10 samples: 7.84888 * (0.22892 + 0.04775) / 0.15^2
    = 96.5, so 97 tests; at 20: 7.84888 * (0.22892 + 0.023875) / 0.0225 = 88.2, so 89."""
    (row,) = statistics(MIXED).lift
    assert (row.plan_lift, row.plan_samples) == (0.15, 10)
    assert (row.plan_tests, row.plan_tests_doubled) == (97, 89)
    # With --upskill-min-lift=0.3 the plan is for 30 points: a quarter of the variance units.
    (asked,) = statistics(MIXED, min_lift=0.3).lift
    assert (asked.plan_lift, asked.plan_tests, asked.plan_tests_doubled) == (0.3, 25, 23)
    sections = {section.kind: section for section in report_sections(statistics(MIXED))}
    planning = sections["planning"]
    assert not isinstance(planning, Table)
    assert planning.lines == [
        "plan m skill vs baseline: to detect a lift of +15 pts (the observed lift) with 80% "
        "power at two-sided 5%, about 97 tests x 10 samples, or 89 tests x 20 samples (from "
        "the spread between these tests)"
    ]


def test_no_lift_to_plan_for() -> None:
    same = {"a": 3, "b": 7}
    (row,) = statistics(_runs("baseline", same) + _runs("skill", same)).lift
    assert (row.lift, row.plan_lift, row.plan_tests, row.plan_tests_doubled) == (0, 0, None, None)
    sections = {section.kind: section for section in report_sections(statistics(MIXED))}
    assert "planning" in sections
    stats = statistics(_runs("baseline", same) + _runs("skill", same))
    (planning,) = [s for s in report_sections(stats) if s.kind == "planning"]
    assert not isinstance(planning, Table)
    assert planning.lines == ["plan m skill vs baseline: a lift of +0 pts: no lift to plan for"]


def test_the_terminal_shows_the_plan_only_when_verbose() -> None:
    assert not any(line.startswith("plan ") for line in summary_table(statistics(MIXED)))
    verbose = summary_table(statistics(MIXED), verbose=True)
    assert any(line.startswith("plan m skill vs baseline: to detect") for line in verbose)


def test_tests_one_arm_could_not_count_are_left_out_and_named() -> None:
    records = MIXED + _runs("baseline", {"only": 1}, samples=2)
    records += [_sample("errs", "baseline", "passed", 0), _sample("errs", "skill", "error", 0)]
    stats = statistics(records)
    (row,) = stats.lift
    assert (row.dropped_tests, row.dropped_uncounted) == (["errs", "only"], ["errs"])
    assert (row.tests, row.lift) == (4, 0.15)  # as without them
    (lifts,) = [s for s in report_sections(stats) if s.kind == "lift"]
    assert not isinstance(lifts, Table)
    assert lifts.lines[1] == (
        "lift m skill vs baseline: left out: only (run by one arm only); errs (no counted "
        "sample in an arm: skips or errors)"
    )


def test_one_sample_per_test_gives_newcombes_interval() -> None:
    base = {f"t{i}": int(i % 3 == 0) for i in range(12)}
    skill = {f"t{i}": int(i % 4 != 0) for i in range(12)}
    (row,) = statistics(_runs("baseline", base, 1) + _runs("skill", skill, 1)).lift
    assert (row.tests, row.design_effect) == (12, 1.0)
    expected = newcombe_interval(9, 12, 4, 12)
    assert (row.ci_low, row.ci_high) == pytest.approx(expected, abs=1e-4)
    assert (row.ci_low, row.ci_high) == (row.these_tests_low, row.these_tests_high)
    assert lift_line(row) == (
        f"lift m skill vs baseline: +42 pts [{row.ci_low * 100:+.0f}, {row.ci_high * 100:+.0f}] "
        f"over 12 tests x 1 sample: {'evidence of lift' if row.evidence else 'no evidence of lift'}"
    )


def test_one_test_is_no_inference_beyond_it() -> None:
    (row,) = statistics(_runs("baseline", {"a": 2}) + _runs("skill", {"a": 9})).lift
    assert (row.tests, row.design_effect, row.paired_t_low, row.plan_tests) == (1, 1, None, None)
    low, high = newcombe_interval(9, 10, 2, 10)
    assert (row.ci_low, row.ci_high) == (round(low, 4), round(high, 4))
    assert lift_line(row) == (
        f"lift m skill vs baseline: +70 pts [{low * 100:+.0f}, {high * 100:+.0f}] over 1 test x "
        "10 samples: evidence of lift; one test: no inference beyond it"
    )


def test_skills_are_compared_test_by_test() -> None:
    records = MIXED + _runs("other", {"a": 8, "b": 8, "c": 9, "d": 7})
    (row,) = statistics(records).comparisons
    assert (row.first, row.second, row.difference, row.tests) == ("skill", "other", 0.15, 4)
    assert row.paired_t_low is not None
    assert row.these_tests_low is not None
    assert not row.evidence

    assert comparison_line(row).startswith("compare m other vs skill: +15 pts [")
    assert (
        "over 4 tests x 10 samples (design effect 2.3): no evidence of a difference; fewer than "
        "5 tests: too few to show a difference over tasks; more tests will help more than more "
        "samples"
    ) in comparison_line(row)


def test_unequal_samples_per_test_are_said() -> None:
    """Errors left test b 4 counted samples of 10: each test still weighs the same."""
    records = _runs("baseline", {"a": 9, "c": 5}) + _runs("baseline", {"b": 2}, samples=4)
    records += [_sample("b", "baseline", "error", i) for i in range(4, 10)]
    (row,) = summarize(records)
    assert row.pass_rate == pytest.approx((0.9 + 0.5 + 0.5) / 3)
    summary = report_sections(statistics(records))[0]
    assert isinstance(summary, Table)
    (note,) = [n for n in summary.notes if n.startswith("m baseline")]
    assert "over 3 tests x 8 samples on average" in note
    assert note.endswith(
        "; tests have 4 to 10 counted samples (errors or skips left some short): each test "
        "weighs the same; the pooled rate would be 67%"
    )


def test_the_json_report_carries_the_paired_lift(tmp_path: Path) -> None:
    write_json_report(tmp_path / "r.json", statistics(MIXED))
    (row,) = json.loads((tmp_path / "r.json").read_text())["lift"]
    assert {k: row[k] for k in ("model", "skill", "lift", "tests", "plan_tests")} == {
        "model": "m",
        "skill": "skill",
        "lift": 0.15,
        "tests": 4,
        "plan_tests": 97,
    }
    assert set(row) >= {
        "baseline_rate",
        "skill_rate",
        "ci_low",
        "ci_high",
        "evidence",
        "samples_per_test",
        "design_effect",
        "paired_t_low",
        "paired_t_high",
        "these_tests_low",
        "these_tests_high",
        "dropped_tests",
        "plan_lift",
        "plan_samples",
        "plan_tests_doubled",
    }


def test_the_plan_asks_for_5_tests_at_least() -> None:
    """100% against 0% on 3 tests is no evidence over tasks; the normal approximation would
    plan 2 tests, which the report calls too few."""
    records = _runs("baseline", dict.fromkeys("abc", 0), 2) + _runs(
        "skill", dict.fromkeys("abc", 2), 2
    )
    (row,) = statistics(records).lift
    assert (row.lift, row.design_effect, row.evidence) == (1.0, 1.0, False)
    assert (row.plan_tests, row.plan_tests_doubled) == (5, 5)
