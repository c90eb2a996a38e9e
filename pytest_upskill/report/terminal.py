"""The tables printed at the end of the session."""

from __future__ import annotations

from ..results import SampleRecord, SummaryRow, lift, summarize, summarize_by_test

__all__ = ["summary_table"]


def summary_table(records: list[SampleRecord], verbose: bool = False) -> list[str]:
    """Aligned lines: per (model, condition) pass rate with its 95% interval, builds, tokens and
    cost; then the lift of each skill; with `verbose`, the same table per test."""
    summary = summarize(records)
    lines = _table(summary, per_test=False)
    lifts = lift(summary)
    if lifts:
        lines.append("")
    for row in lifts:
        verdict = "" if row.evidence else "  no evidence of lift"
        lines.append(
            f"lift {row.model} {row.skill} vs baseline: {row.lift:+.0%} "
            f"[{row.ci_low:+.0%}, {row.ci_high:+.0%}]{verdict}"
        )
    if verbose:
        lines += ["", *_table(summarize_by_test(records), per_test=True)]
    return lines


def _table(rows: list[SummaryRow], per_test: bool) -> list[str]:
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
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
