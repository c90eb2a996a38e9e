"""The table printed at the end of the session."""

from __future__ import annotations

from ..results import SampleRecord, summarize

__all__ = ["summary_table"]


def summary_table(records: list[SampleRecord]) -> list[str]:
    """Aligned lines: model, condition, passed/n, pass rate with its 95% interval, builds."""
    header = ("model", "condition", "passed", "rate", "95% CI", "built", "skipped", "errors")
    rows = [header]
    for row in summarize(records):
        rows.append(
            (
                row.model,
                row.condition,
                f"{row.passed}/{row.n}",
                f"{row.pass_rate:.0%}" if row.n else "-",
                f"[{row.ci_low:.0%}, {row.ci_high:.0%}]" if row.n else "-",
                str(row.built),
                str(row.skipped),
                str(row.errors),
            )
        )
    widths = [max(len(line[i]) for line in rows) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in rows
    ]
