"""The tables printed at the end of the session."""

from __future__ import annotations

from ..environ import withheld_secrets
from ..sanitize import clean_text
from .results import Statistics
from .sections import Table, report_sections

__all__ = ["summary_table"]


def summary_table(stats: Statistics, verbose: bool = False) -> list[str]:
    """Aligned lines: per (model, condition) pass rate with its 95% interval, builds, tokens and
    cost; then the lift of each skill, the differences between skills and what each skill
    costs in context; with `verbose`, how many tests would show each lift and the same table
    per test. The gates are not here: the session prints them last, after the paths of the
    reports."""
    secrets = withheld_secrets()  # one read of the environment

    def text(value: str) -> str:
        # One line per value: a name holding a newline would break the table, or print a line
        # of its own that reads like pytest's.
        return clean_text(value, secrets=secrets).replace("\n", " ").replace("\t", " ")

    lines: list[str] = []
    for section in report_sections(stats, text=text):
        if section.kind in ("per_test", "planning") and not verbose:
            continue
        if lines:
            lines.append("")  # a blank line between sections
        if isinstance(section, Table):
            lines += [*_aligned([section.header, *section.rows]), *section.notes]
        else:
            lines += section.lines
    return lines


def _aligned(table: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
