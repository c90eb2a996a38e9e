"""The tables printed at the end of the session."""

from __future__ import annotations

from ..environ import withheld_secrets
from ..sanitize import clean_text
from .results import Statistics
from .tables import (
    comparison_line,
    context_lines,
    lift_line,
    summary_cells,
    suspicious_lines,
)

__all__ = ["summary_table"]


def summary_table(stats: Statistics, verbose: bool = False) -> list[str]:
    """Aligned lines: per (model, condition) pass rate with its 95% interval, builds, tokens and
    cost; then the lift of each skill, the differences between skills and what each skill
    costs in context; with `verbose`, the same table per test."""
    secrets = withheld_secrets()  # one read of the environment

    def text(value: str) -> str:
        # One line per value: a name holding a newline would break the table, or print a line
        # of its own that reads like pytest's.
        return clean_text(value, secrets=secrets).replace("\n", " ").replace("\t", " ")

    lines = _aligned(summary_cells(stats.summary, per_test=False, text=text))
    errors = sum(row.errors for row in stats.summary)
    if errors:
        lines.append(
            f"{errors} sample(s) ended as errors (the harness's or the provider's, not the "
            "model's): left out of every rate"
        )
    if stats.lift:
        lines += ["", *(lift_line(row, text) for row in stats.lift)]
    if stats.comparisons:
        lines += ["", *(comparison_line(row, text) for row in stats.comparisons)]
    context = context_lines(stats.summary, text=text)
    if context:
        lines += ["", *context]
    suspicious = suspicious_lines(stats.records, text)
    if suspicious:
        lines += ["", *suspicious]
    if verbose:
        lines += ["", *_aligned(summary_cells(stats.by_test, per_test=True, text=text))]
    return lines


def _aligned(table: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
