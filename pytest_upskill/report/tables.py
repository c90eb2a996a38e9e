"""The cells of the summary tables and the lift lines, shared by the terminal and Markdown."""

from __future__ import annotations

from ..results import LiftRow, SummaryRow

__all__ = ["lift_line", "summary_cells"]


def summary_cells(rows: list[SummaryRow], per_test: bool) -> list[tuple[str, ...]]:
    """A header, then one line of cells per row."""
    header: tuple[str, ...] = ("model", "condition", "passed", "rate", "95% CI", "built")
    header += ("skipped", "errors", "tokens out", "cost")
    table = [(("test",) if per_test else ()) + header]
    for row in rows:
        cost = "-" if row.mean_cost_usd is None else f"${row.mean_cost_usd:.4f}"
        table.append(
            ((row.test or "",) if per_test else ())
            + (
                row.model,
                row.condition,
                f"{row.passed}/{row.n}",
                f"{row.pass_rate:.0%}" if row.n else "-",
                f"[{row.ci_low:.0%}, {row.ci_high:.0%}]" if row.n else "-",
                str(row.built),
                str(row.skipped),
                str(row.errors),
                f"{row.mean_output_tokens:.0f}",
                cost,
            )
        )
    return table


def lift_line(row: LiftRow) -> str:
    verdict = "" if row.evidence else "  no evidence of lift"
    return (
        f"lift {row.model} {row.skill} vs baseline: {row.lift:+.0%} "
        f"[{row.ci_low:+.0%}, {row.ci_high:+.0%}]{verdict}"
    )
