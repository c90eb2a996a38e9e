"""The Markdown summary (`--upskill-markdown`), ready for $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..environ import withheld_secrets
from ..sanitize import markdown_text
from .results import Statistics
from .sections import Table, report_sections

__all__ = ["write_markdown_report"]


def write_markdown_report(path: Path, stats: Statistics, gates: list[str]) -> None:
    """Every value from the session is Markdown-escaped (`markdown_text`): a hostile name or
    message reads as text, never as a heading, link, image or HTML."""
    text = partial(markdown_text, secrets=withheld_secrets())  # one read of the environment
    lines = ["## pytest-upskill"]
    # No heading per section: the page holds one heading only, and a list reads as well.
    for section in report_sections(stats, gates, text):
        lines.append("")
        if isinstance(section, Table) and section.kind == "per_test":
            lines += [f"<details><summary>{section.title}</summary>", ""]
            lines += [*_table(section), "", "</details>"]
        elif isinstance(section, Table):
            lines += _table(section)
            # A blank line first: a line right under a table would read as one more row.
            lines += [line for note in section.notes for line in ("", note)]
        else:
            label = "**gate failed**: " if section.kind == "gates" else ""
            lines += [f"- {label}{line}" for line in section.lines]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _table(table: Table) -> list[str]:
    """The cells come escaped (their values through `markdown_text`, pipes included)."""
    lines = ["| " + " | ".join(table.header) + " |", "|" + " --- |" * len(table.header)]
    return lines + ["| " + " | ".join(row) + " |" for row in table.rows]
