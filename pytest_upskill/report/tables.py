"""The cells of the summary tables and the lines of the other sections (`sections` orders them).

Every value from the session (model, condition and test names, node ids, warnings) goes through
`text`, once: the writer's own cleaning (`clean_text` for the terminal and HTML, which escapes
the whole cell after, `markdown_text` for Markdown); what these functions add is safe as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from ..sanitize import clean_text
from .results import ComparisonRow, LiftRow, SampleRecord, SummaryRow
from .speed import FAST_P

Text = Callable[[str], str]

__all__ = [
    "Text",
    "comparison_line",
    "context_lines",
    "lift_line",
    "summary_cells",
    "suspicious_lines",
]


def summary_cells(
    rows: list[SummaryRow], per_test: bool, text: Text = clean_text
) -> list[tuple[str, ...]]:
    """A header, then one line of cells per row."""
    header: tuple[str, ...] = ("model", "condition", "passed", "rate", "95% CI", "built")
    header += ("skipped", "errors", "tokens out", "cost")
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


def lift_line(row: LiftRow, text: Text = clean_text) -> str:
    if row.no_lift:
        return f"lift {text(row.model)} {text(row.skill)} vs baseline: none: {row.no_lift}"
    verdict = "" if row.evidence else "  no evidence of lift"
    return (
        f"lift {text(row.model)} {text(row.skill)} vs baseline: {row.lift:+.0%} "
        f"[{row.ci_low:+.0%}, {row.ci_high:+.0%}]{verdict}"
    )


def comparison_line(row: ComparisonRow, text: Text = clean_text) -> str:
    verdict = "" if row.evidence else "  no evidence of a difference"
    return (
        f"compare {text(row.model)} {text(row.second)} vs {text(row.first)}: {row.difference:+.0%} "
        f"[{row.ci_low:+.0%}, {row.ci_high:+.0%}]{verdict}"
    )


def context_lines(
    summary: list[SummaryRow], baseline: str = "baseline", text: Text = clean_text
) -> list[str]:
    """What each skill costs in context: its block's estimated tokens and, where the model
    reported them, the mean input tokens against the baseline's."""
    bases = {row.model: row for row in summary if row.condition == baseline}
    lines = []
    for row in summary:
        if row.condition == baseline or not row.mean_skill_tokens_estimate:
            continue
        line = (
            f"context {text(row.model)} {text(row.condition)}: skill block ~"
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
