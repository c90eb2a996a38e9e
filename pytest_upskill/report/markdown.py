"""The Markdown summary (`--upskill-markdown`), ready for $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from pathlib import Path

from ..results import Statistics
from .tables import (
    comparison_line,
    context_lines,
    lift_line,
    summary_cells,
    suspicious_lines,
)

__all__ = ["write_markdown_report"]


def write_markdown_report(path: Path, stats: Statistics, gates: list[str]) -> None:
    lines = ["## pytest-upskill", "", *_table(summary_cells(stats.summary, per_test=False))]
    if stats.lift:
        lines += ["", *(f"- {lift_line(row)}" for row in stats.lift)]
    if stats.comparisons:
        lines += ["", *(f"- {comparison_line(row)}" for row in stats.comparisons)]
    context = context_lines(stats.summary)
    if context:
        lines += ["", *(f"- {line}" for line in context)]
    if gates:
        lines += ["", *(f"- **gate failed**: {gate}" for gate in gates)]
    suspicious = suspicious_lines(stats.records)
    if suspicious:
        lines += ["", *(f"- {line.replace('|', chr(92) + '|')}" for line in suspicious)]
    lines += ["", "<details><summary>Per test</summary>", ""]
    lines += [*_table(summary_cells(stats.by_test, per_test=True)), "", "</details>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _table(table: list[tuple[str, ...]]) -> list[str]:
    header, *rows = table
    escaped = [[cell.replace("|", "\\|") for cell in line] for line in (header, *rows)]
    lines = ["| " + " | ".join(escaped[0]) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(line) + " |" for line in escaped[1:]]
