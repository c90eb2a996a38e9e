"""The cells of the summary tables and the lines of the other sections (`sections` orders them).

Every value from the session (model, condition and test names, node ids, warnings) goes through
`text`, once: the writer's own cleaning (`clean_text` for the terminal and HTML, which escapes
the whole cell after, `markdown_text` for Markdown); what these functions add is safe as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from ..sanitize import clean_text
from .lift import ComparisonRow, LiftRow
from .results import SampleRecord, SummaryRow
from .speed import FAST_P
from .stats import mean

Text = Callable[[str], str]

__all__ = [
    "Text",
    "comparison_line",
    "comparison_lines",
    "context_lines",
    "lift_line",
    "lift_lines",
    "planning_line",
    "summary_cells",
    "suspicious_lines",
]


def summary_cells(
    rows: list[SummaryRow], per_test: bool, text: Text = clean_text
) -> list[tuple[str, ...]]:
    """A header, then one line of cells per row."""
    header: tuple[str, ...] = ("model", "condition", "passed", "rate", "95% CI", "built")
    header += ("skipped", "errors", "mean tokens out", "cost")
    # Speed columns only when a test measured a speedup: other sessions' tables stay as they were.
    speed = any(row.fast_p for row in rows)
    if speed:
        header += ("speedup", *(f"fast_{p}" for p in FAST_P))
    table = [(("test",) if per_test else ()) + header]
    for row in rows:
        cost = "-" if row.mean_cost_usd is None else f"${row.mean_cost_usd:.4f}"
        table.append(
            ((text(row.test or ""),) if per_test else ())
            + (
                text(row.model),
                text(row.condition),
                f"{row.passed}/{row.n}",
                f"{row.pass_rate:.0%}" if row.n else "-",
                f"[{row.ci_low:.0%}, {row.ci_high:.0%}]" if row.n else "-",
                str(row.built),
                str(row.skipped),
                str(row.errors),
                f"{row.mean_output_tokens:.0f}",
                cost,
            )
            + (_speed_cells(row) if speed else ())
        )
    return table


def _speed_cells(row: SummaryRow) -> tuple[str, ...]:
    geomean = "-" if row.geomean_speedup is None else f"{row.geomean_speedup:.2f}x"
    fast = tuple(
        f"{row.fast_p[str(p)]:.0%}" if str(p) in row.fast_p and row.n else "-" for p in FAST_P
    )
    return (geomean, *fast)


def suspicious_lines(records: list[SampleRecord], text: Text = clean_text) -> list[str]:
    """One line per sample whose speedup looks too good to be true."""
    lines = []
    for record in records:
        if not record.speedup_suspicious:
            continue
        ratio = "inf" if record.speedup is None else f"{record.speedup:.1f}"
        nodeid = text(record.nodeid)
        lines.append(f"upskill: suspicious speedup {ratio}x in {nodeid}: check for cheating")
        warned = dict.fromkeys(w for s in record.speedups for w in s.warnings)
        lines += [f"upskill: {nodeid}: {text(warning)}" for warning in warned]
    return lines


def _points(difference: float) -> str:
    """A difference of rates in percentage points, signed: `+40`; never `-0`."""
    return f"{round(difference * 100):+d}"


def lift_lines(row: LiftRow, text: Text = clean_text) -> list[str]:
    """The lift line, then the tests it left out, if any."""
    return [lift_line(row, text), *_left_out(_lift_head(row, text), row, text)]


def comparison_lines(row: ComparisonRow, text: Text = clean_text) -> list[str]:
    """The comparison line, then the tests it left out, if any."""
    return [comparison_line(row, text), *_left_out(_comparison_head(row, text), row, text)]


def _lift_head(row: LiftRow, text: Text) -> str:
    return f"lift {text(row.model)} {text(row.skill)} vs baseline"


def _comparison_head(row: ComparisonRow, text: Text) -> str:
    return f"compare {text(row.model)} {text(row.second)} vs {text(row.first)}"


def lift_line(row: LiftRow, text: Text = clean_text) -> str:
    head = _lift_head(row, text)
    if row.no_lift:
        return f"{head}: none: {row.no_lift}"
    if row.evidence:
        verdict = "evidence of lift" if row.ci_low > 0 else "evidence of a drop"
    else:
        verdict = "no evidence of lift"
    return f"{head}: {_over_tests(row, row.lift, verdict, 'lift')}"


def comparison_line(row: ComparisonRow, text: Text = clean_text) -> str:
    verdict = "evidence of a difference" if row.evidence else "no evidence of a difference"
    return (
        f"{_comparison_head(row, text)}: {_over_tests(row, row.difference, verdict, 'difference')}"
    )


def _over_tests(row: LiftRow | ComparisonRow, difference: float, verdict: str, what: str) -> str:
    """`+40 pts [-12, +71] over 3 tests x 10 samples (design effect 3.1): <verdict>`, then
    what the interval cannot say."""
    line = f"{_points(difference)} pts [{_points(row.ci_low)}, {_points(row.ci_high)}]"
    if row.tests:  # 0: from the summary rows alone, no tests to name
        line += f" over {_count(row.tests, 'test')} x {_samples(row.samples_per_test)}"
        if row.tests > 1 and row.samples_per_test > 1:
            line += f" (design effect {row.design_effect:.1f})"
    warnings = [verdict]
    if row.tests == 1:
        warnings.append("one test: no inference beyond it")
    elif 1 < row.tests < 5:
        warnings.append(f"fewer than 5 tests: too few to show a {what} over tasks")
    if row.design_effect >= 2:
        warnings.append("more tests will help more than more samples")
    return f"{line}: {'; '.join(warnings)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _samples(per_test: float) -> str:
    if per_test.is_integer():
        return _count(int(per_test), "sample")
    return f"{per_test:.1f} samples on average"


_NAMED = 8  # tests named in a left-out line


def _left_out(head: str, row: LiftRow | ComparisonRow, text: Text) -> list[str]:
    """The tests a difference left out, named with why (the first few: the JSON has them all)."""
    if not row.dropped_tests:
        return []
    uncounted = set(row.dropped_uncounted)
    groups = [
        ([t for t in row.dropped_tests if t not in uncounted], "run by one arm only"),
        (row.dropped_uncounted, "no counted sample in an arm: skips or errors"),
    ]
    parts = []
    room = _NAMED
    for tests, why in groups:
        if not tests:
            continue
        shown = tests[:room]
        room -= len(shown)
        more = len(tests) - len(shown)
        names = ", ".join(text(test) for test in shown) if shown else _count(more, "test")
        if shown and more:
            names += f" and {more} more"
        parts.append(f"{names} ({why})")
    return [f"{head}: left out: {'; '.join(parts)}"]


def planning_line(row: LiftRow, text: Text = clean_text) -> str | None:
    """How many tests would show the lift with 80% power; None without two paired tests."""
    if row.no_lift or row.plan_lift is None:
        return None
    head = f"plan {text(row.model)} {text(row.skill)} vs baseline"
    size = f"{_points(row.plan_lift)} pts"
    if row.plan_tests is None or row.plan_tests_doubled is None:
        return f"{head}: a lift of {size}: no lift to plan for"
    which = "the observed lift" if row.plan_lift == row.lift else "the lift asked for"
    return (
        f"{head}: to detect a lift of {size} ({which}) with 80% power at two-sided 5%, about "
        f"{_count(row.plan_tests, 'test')} x {_count(row.plan_samples, 'sample')}, or "
        f"{_count(row.plan_tests_doubled, 'test')} x {_count(2 * row.plan_samples, 'sample')} "
        "(from the spread between these tests)"
    )


def context_lines(
    summary: list[SummaryRow],
    by_test: list[SummaryRow],
    baseline: str = "baseline",
    text: Text = clean_text,
) -> list[str]:
    """What each skill costs in context: its block's estimated tokens and, where the model
    reported them, the mean input tokens against the baseline's on the tests both ran."""
    lines = []
    for row in summary:
        if row.condition == baseline or not row.mean_skill_tokens_estimate:
            continue
        line = (
            f"context {text(row.model)} {text(row.condition)}: skill block ~"
            f"{row.mean_skill_tokens_estimate:.0f} tokens (estimated: characters / 4)"
        )
        lines.append(line + _input_tokens(row, by_test, baseline))
    return lines


def _input_tokens(row: SummaryRow, by_test: list[SummaryRow], baseline: str) -> str:
    """`; input tokens X vs Y baseline (+Z, as the model counted)` over the tests both arms
    ran, each weighing the same as in the rates. Only shared tests: a skill that owns its cases
    runs on those alone, and the baseline's other prompts would skew its mean."""

    def per_test(condition: str) -> dict[str, float]:
        # A test with no tokens counted (every sample an error before the reply) says nothing.
        return {
            r.test or "": r.mean_input_tokens
            for r in by_test
            if (r.model, r.condition) == (row.model, condition) and r.mean_input_tokens
        }

    skill, base = per_test(row.condition), per_test(baseline)
    shared = [test for test in skill if test in base]
    if not shared:
        return ""
    mine, theirs = mean([skill[t] for t in shared]), mean([base[t] for t in shared])
    where = ""
    if len(shared) < max(len(skill), len(base)):
        where = f" on the {_count(len(shared), 'test')} both ran"
    return (
        f"; input tokens {mine:.0f} vs {theirs:.0f} baseline{where} "
        f"({mine - theirs:+.0f}, as the model counted)"
    )
