"""The HTML report (`--upskill-html`): one self-contained file, no script.

A bar chart of pass rate per model, the baseline and each skill side by side with their 95%
intervals as whiskers; the tables; and a drill-down per sample (prompt, reply, extracted files,
build log, failure), read from the sample's directory and its cached build. Everything a model
wrote is escaped, and the page's content security policy forbids scripts, so a hostile reply
cannot run in the reader's browser; every text shown goes through `clean_text` first, so no
secret this process holds and no control character reaches the page either.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from html import escape
from pathlib import Path

from ..environ import withheld_secrets
from ..sanitize import clean_text
from .results import SampleRecord, Statistics, SummaryRow
from .sections import Section, Table, report_sections

__all__ = ["write_html_report"]

_MAX_TEXT = 200_000  # characters of one file shown in a drill-down
_COLOURS = ["#7f8c8d", "#2e86de", "#e67e22", "#27ae60", "#8e44ad", "#c0392b"]
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
pre { background: #f6f6f6; padding: 8px; overflow: auto; max-height: 30em; }
details.sample { margin: 4px 0; } .passed { color: #27ae60; } .failed { color: #c0392b; }
.error { color: #8e44ad; } .skipped { color: #7f8c8d; }
"""


def write_html_report(path: Path, stats: Statistics, gates: list[str]) -> None:
    secrets = withheld_secrets()  # one read of the environment for the whole page
    text = partial(clean_text, secrets=secrets)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        f"<title>pytest-upskill</title><style>{_STYLE}</style></head><body>",
        "<h1>pytest-upskill</h1>",
        _chart(stats.summary, secrets),
    ]
    for section in report_sections(stats, gates, text):
        parts += _section(section)
    parts += ["<h2>Samples</h2>", *(_drill_down(record, secrets) for record in stats.records)]
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def _chart(summary: list[SummaryRow], secrets: Sequence[str]) -> str:
    """Grouped bars, one group per model, one bar per condition, whiskers for the interval."""
    models = list(dict.fromkeys(row.model for row in summary))
    conditions = list(dict.fromkeys(row.condition for row in summary))
    bar, gap, height, top, left = 28, 24, 200, 20, 40
    group = bar * len(conditions) + gap
    width = left + group * max(len(models), 1) + 160
    shapes = [
        f'<svg id="pass-rates" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height + top + 60}" role="img" aria-label="pass rate per model and condition">',
        f'<line x1="{left}" y1="{top + height}" x2="{width - 160}" y2="{top + height}" '
        'stroke="#444"/>',
    ]
    for tick in (0, 0.5, 1):
        y = top + height * (1 - tick)
        shapes.append(f'<text x="4" y="{y + 4:.0f}" font-size="11">{tick:.0%}</text>')
    rows = {(row.model, row.condition): row for row in summary}
    for m, model in enumerate(models):
        x0 = left + gap / 2 + m * group
        shapes.append(
            f'<text x="{x0:.0f}" y="{top + height + 18}" font-size="12">'
            f"{_html(model, secrets)}</text>"
        )
        for c, condition in enumerate(conditions):
            row = rows.get((model, condition))
            if row is None or row.n == 0:
                continue
            x = x0 + c * bar
            colour = _COLOURS[c % len(_COLOURS)]
            y = top + height * (1 - row.pass_rate)
            low, high = (top + height * (1 - v) for v in (row.ci_low, row.ci_high))
            label = f"{model} {condition}: {row.passed}/{row.n}"
            shapes += [
                f'<rect class="bar" x="{x + 2:.0f}" y="{y:.1f}" width="{bar - 4}" '
                f'height="{top + height - y:.1f}" fill="{colour}"><title>{_html(label, secrets)}'
                "</title></rect>",
                f'<line class="whisker" x1="{x + bar / 2:.0f}" y1="{low:.1f}" '
                f'x2="{x + bar / 2:.0f}" y2="{high:.1f}" stroke="#111"/>',
            ]
    for c, condition in enumerate(conditions):
        y = top + 14 * c
        colour = _COLOURS[c % len(_COLOURS)]
        shapes += [
            f'<rect class="legend" x="{width - 150}" y="{y}" width="10" height="10" '
            f'fill="{colour}"/>',
            f'<text x="{width - 135}" y="{y + 9}" font-size="11">'
            f"{_html(condition, secrets)}</text>",
        ]
    shapes.append("</svg>")
    return "\n".join(shapes)


def _section(section: Section) -> list[str]:
    """A heading, then the table or the list; every text escaped (cleaned already)."""
    heading = f"<h2>{escape(section.title)}</h2>"
    if isinstance(section, Table):
        notes = (f'<p class="note">{escape(note)}</p>' for note in section.notes)
        return [heading, _table(section), *notes]
    # The suspicious speedups get a class of their own: a reader's style can make them stand out.
    kind = ' class="suspicious"' if section.kind == "suspicious" else ""
    items = (f"<li>{escape(line)}</li>" for line in section.lines)
    return [f"{heading}<ul{kind}>", *items, "</ul>"]


def _table(table: Table) -> str:
    lines = ["<table><tr>", *(f"<th>{escape(cell)}</th>" for cell in table.header), "</tr>"]
    for row in table.rows:
        lines += ["<tr>", *(f"<td>{escape(cell)}</td>" for cell in row), "</tr>"]
    return "".join(lines) + "</table>"


def _drill_down(record: SampleRecord, secrets: Sequence[str]) -> str:
    title = f"{record.nodeid}: {record.outcome} at {record.stage}"
    if record.speedup is not None:
        title += f", speedup {record.speedup:.2f}x"
    if record.reason:
        title += f": {record.reason}"
    parts = [
        f'<details class="sample"><summary class="{escape(record.outcome)}">'
        f"{_html(title, secrets)}"
        "</summary>"
    ]
    directory = Path(record.directory) if record.directory else None
    if directory is not None:
        for name in ("prompt.md", "reply.md"):
            parts.append(_file_block(name, directory / name, secrets))
        if record.build_directory:
            log = Path(record.build_directory) / "build.log"
            parts.append(_file_block("build.log", log, secrets))
        project = directory / "project"
        if project.is_dir():
            for file in sorted(p for p in project.rglob("*") if p.is_file()):
                label = f"project/{file.relative_to(project)}"
                parts.append(_file_block(label, file, secrets))
    parts.append("</details>")
    return "\n".join(parts)


def _file_block(label: str, path: Path, secrets: Sequence[str]) -> str:
    if not path.is_file() or path.is_symlink():
        return ""
    # Cleaned whole, then cut: a cut first could split a secret and show its first half.
    text = clean_text(path.read_text(encoding="utf-8", errors="replace"), secrets=secrets)
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + f"\n… ({len(text) - _MAX_TEXT} more characters)"
    return f"<h4>{_html(label, secrets)}</h4><pre>{escape(text)}</pre>"


def _html(text: str, secrets: Sequence[str]) -> str:
    return escape(clean_text(text, secrets=secrets))
