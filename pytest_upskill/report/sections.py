"""The sections of a report, in order, computed once for every writer.

The terminal, Markdown and HTML writers only format these sections into their medium, so
which sections a report has, in what order, and what each line says cannot drift between them.
Values from the session go through the writer's `text` (see `tables`), once, while the sections
are built: a writer adds only its own markup, escaped where its medium needs it (HTML).

The JSON report is the data itself (`Statistics`), not these sections; the HTML chart and its
per-sample drill-down read files and stay in `html`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..sanitize import clean_text
from .results import Statistics, SummaryRow
from .serving import reply_lines
from .tables import (
    Text,
    comparison_lines,
    context_lines,
    lift_lines,
    planning_line,
    summary_cells,
    suspicious_lines,
)
from .turns import turn_lines

__all__ = ["Kind", "Lines", "Section", "Table", "report_sections"]

# What a section holds; a writer that treats one kind its own way (the per-test table and the
# planning only with -v on the terminal, in <details> in Markdown) tests this, never the title.
Kind = Literal[
    "summary",
    "lift",
    "planning",
    "comparisons",
    "context",
    "replies",
    "turns",
    "gates",
    "suspicious",
    "per_test",
]


@dataclass(frozen=True)
class Table:
    """A table of cells, already cleaned; `notes` say what its numbers leave out."""

    kind: Kind
    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Lines:
    """Lines of text, already cleaned, one statement each (a list item in Markdown and HTML)."""

    kind: Kind
    title: str
    lines: list[str]


Section = Table | Lines


def report_sections(
    stats: Statistics, gates: Sequence[str] = (), text: Text = clean_text
) -> list[Section]:
    """The summary table; the lift of each skill, how many tests would show it, the
    differences between skills, what each skill costs in context, the CI gates missed and the
    suspicious speedups, each only when it has a line; then the table per test."""
    notes = _error_notes(stats.summary) + _spread_notes(stats.summary, stats.by_test, text)
    summary = _table("summary", "Summary", stats.summary, text, notes)
    lifts = [line for row in stats.lift for line in lift_lines(row, text)]
    compared = [line for row in stats.comparisons for line in comparison_lines(row, text)]
    plans = [line for row in stats.lift if (line := planning_line(row, text)) is not None]
    listed = [
        Lines("lift", "Lift", lifts),
        Lines("planning", "Planning", plans),
        Lines("comparisons", "Skill against skill", compared),
        Lines("context", "Context", context_lines(stats.summary, stats.by_test, text=text)),
        Lines("replies", "Replies", reply_lines(stats, text)),
        Lines("turns", "Turns", turn_lines(stats, text)),
        # Gate lines quote model and condition names: cleaned like any value from the session.
        Lines("gates", "Gates failed", [text(gate) for gate in gates]),
        Lines("suspicious", "Suspicious speedups", suspicious_lines(stats.records, text)),
    ]
    per_test = _table("per_test", "Per test", stats.by_test, text)
    return [summary, *(section for section in listed if section.lines), per_test]


def _table(
    kind: Kind, title: str, rows: list[SummaryRow], text: Text, notes: list[str] | None = None
) -> Table:
    header, *cells = summary_cells(rows, per_test=kind == "per_test", text=text)
    return Table(kind, title, header, cells, notes or [])


def _spread_notes(summary: list[SummaryRow], by_test: list[SummaryRow], text: Text) -> list[str]:
    """What a rate over several samples per test holds for: the samples of one test are not
    independent draws of the rate over tests (`report.stats.clustered_rate`)."""
    notes = []
    for row in summary:
        if row.n <= row.tests:  # one sample per test: independent draws
            continue
        per_test = row.n / row.tests
        mine = (row.model, row.condition)
        counted = [r.n for r in by_test if (r.model, r.condition) == mine and r.n > 0]
        unequal = bool(counted) and min(counted) != max(counted)
        samples = f"{per_test:.0f}" if per_test.is_integer() else f"{per_test:.1f}"
        average = " on average" if unequal or not per_test.is_integer() else ""
        tests = "1 test" if row.tests == 1 else f"{row.tests} tests"
        line = (
            f"{text(row.model)} {text(row.condition)}: {row.pass_rate:.0%} "
            f"[{row.ci_low:.0%}, {row.ci_high:.0%}] over {tests} x {samples} samples{average}"
        )
        if row.tests == 1:
            notes.append(f"{line}: one test, no inference beyond it")
            continue
        effective = row.n / row.design_effect
        line += (
            f" (design effect {row.design_effect:.1f}: {row.n} samples count as {effective:.0f})"
        )
        warnings = []
        if row.tests < 5:
            warnings.append("fewer than 5 tests: no inference beyond these tests' spread")
        if row.design_effect >= 2:
            warnings.append("more tests will help more than more samples")
        if unequal:
            # The mean of per-test rates is not the pooled rate a reader might work out.
            warnings.append(
                f"tests have {min(counted)} to {max(counted)} counted samples (errors or skips "
                "left some short): each test weighs the same; the pooled rate would be "
                f"{row.passed / row.n:.0%}"
            )
        notes.append(line + "".join(f"; {warning}" for warning in warnings))
    return notes


def _error_notes(summary: list[SummaryRow]) -> list[str]:
    # Errors are out of n, so a rate alone hides them: say how many, in every report.
    errors = sum(row.errors for row in summary)
    if not errors:
        return []
    return [
        f"{errors} sample(s) ended as errors (the harness's or the provider's, not the "
        "model's): left out of every rate"
    ]
