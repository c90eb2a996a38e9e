"""The cells of the summary tables and the lift lines, shared by the terminal and Markdown."""

from __future__ import annotations

from ..results import ComparisonRow, LiftRow, SummaryRow

__all__ = ["comparison_line", "context_lines", "lift_line", "summary_cells"]


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


def comparison_line(row: ComparisonRow) -> str:
    verdict = "" if row.evidence else "  no evidence of a difference"
    return (
        f"compare {row.model} {row.second} vs {row.first}: {row.difference:+.0%} "
        f"[{row.ci_low:+.0%}, {row.ci_high:+.0%}]{verdict}"
    )


def context_lines(summary: list[SummaryRow], baseline: str = "baseline") -> list[str]:
    """What each skill costs in context: its block's estimated tokens and, where the model
    reported them, the mean input tokens against the baseline's."""
    bases = {row.model: row for row in summary if row.condition == baseline}
    lines = []
    for row in summary:
        if row.condition == baseline or not row.mean_skill_tokens_estimate:
            continue
        line = (
            f"context {row.model} {row.condition}: skill block ~"
            f"{row.mean_skill_tokens_estimate:.0f} tokens (estimated: characters / 4)"
        )
        base = bases.get(row.model)
        if base is not None and row.mean_input_tokens and base.mean_input_tokens:
            extra = row.mean_input_tokens - base.mean_input_tokens
            line += (
                f"; input tokens {row.mean_input_tokens:.0f} vs {base.mean_input_tokens:.0f} "
                f"baseline ({extra:+.0f}, as the model counted)"
            )
        lines.append(line)
    return lines
