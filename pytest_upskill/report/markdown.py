"""The Markdown summary (`--upskill-markdown`), ready for $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..environ import withheld_secrets
from ..sanitize import markdown_text
from .results import Statistics
from .tables import (
    comparison_line,
    context_lines,
    lift_line,
    summary_cells,
    suspicious_lines,
)

__all__ = ["write_markdown_report"]


def write_markdown_report(path: Path, stats: Statistics, gates: list[str]) -> None:
    """Every value from the session is Markdown-escaped (`markdown_text`): a hostile name or
    message reads as text, never as a heading, link, image or HTML."""
    text = partial(markdown_text, secrets=withheld_secrets())  # one read of the environment
    summary = summary_cells(stats.summary, per_test=False, text=text)
    lines = ["## pytest-upskill", "", *_table(summary)]
    if stats.lift:
        lines += ["", *(f"- {lift_line(row, text)}" for row in stats.lift)]
    if stats.comparisons:
        lines += ["", *(f"- {comparison_line(row, text)}" for row in stats.comparisons)]
    context = context_lines(stats.summary, text=text)
    if context:
        lines += ["", *(f"- {line}" for line in context)]
    if gates:
        lines += ["", *(f"- **gate failed**: {text(gate)}" for gate in gates)]
    suspicious = suspicious_lines(stats.records, text)
    if suspicious:
        lines += ["", *(f"- {line}" for line in suspicious)]
    lines += ["", "<details><summary>Per test</summary>", ""]
    lines += [*_table(summary_cells(stats.by_test, per_test=True, text=text)), "", "</details>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _table(table: list[tuple[str, ...]]) -> list[str]:
    """The cells come escaped (their values through `markdown_text`, pipes included)."""
    header, *rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(line) + " |" for line in rows]
