"""The HTML report (`--upskill-html`): one self-contained file, no script.

A bar chart of pass rate per model, the baseline and each skill side by side with their 95%
intervals as whiskers; for agent loops, a line chart of pass rate by turn with its table; the
tables; and a drill-down per sample (prompt, reply, extracted files, build log, failure; turn by
turn for an agent loop; an agent CLI's transcript, an event a line), read from the sample's
directory and its cached build. Everything a model wrote is escaped, and the page's content
security policy forbids scripts, so a hostile reply cannot run in the reader's browser; every
text shown goes through `clean_text` first, so no secret this process holds and no control
character reaches the page either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from html import escape
from pathlib import Path

from ..environ import withheld_secrets
from ..sanitize import clean_text
from .results import SampleRecord, Statistics, SummaryRow, TurnRecord
from .sections import Section, Table, report_sections

__all__ = ["write_html_report"]

_MAX_TEXT = 200_000  # characters of one file shown in a drill-down
_COLOURS = ["#7f8c8d", "#2e86de", "#e67e22", "#27ae60", "#8e44ad", "#c0392b"]
_DASHES = ["none", "6 3", "2 3", "8 3 2 3"]
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
    # Only for agent loops: a session of single replies renders as it always has.
    if any(row.pass_at_turn for row in stats.summary):
        parts.append(_turn_chart(stats.summary, secrets))
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
        if record.turns > 1:
            # The conversation turn by turn; the build log and the project are the last turn's.
            turns, project = _turn_sections(record, directory, secrets)
            parts += turns
        else:
            for name in ("prompt.md", "reply.md"):
                parts.append(_file_block(name, directory / name, secrets))
            project = directory / "project"
        transcript = Path(record.transcript) if record.transcript else None
        if transcript is not None and transcript.is_relative_to(directory):
            parts.append(_events_block(transcript, secrets))
        if record.build_directory:
            log = Path(record.build_directory) / "build.log"
            parts.append(_file_block("build.log", log, secrets))
        if project.is_dir():
            for file in sorted(p for p in project.rglob("*") if p.is_file()):
                label = f"{project.relative_to(directory).as_posix()}/{file.relative_to(project)}"
                parts.append(_file_block(label, file, secrets))
    parts.append("</details>")
    return "\n".join(parts)


def _events_block(path: Path, secrets: Sequence[str]) -> str:
    """An agent CLI's transcript: an event a line, its kind first."""
    from ..clients.protocol import json_events

    if not path.is_file() or path.is_symlink():
        return ""
    with open(path, "rb") as stream:  # the first events: the page shows no more anyway
        text = stream.read(_MAX_TEXT * 4).decode("utf-8", "replace")
    lines = []
    for event in json_events(text, limit=2000):
        kind = str(event.get("type", "?"))
        item = event.get("item")
        detail = event.get("subtype") or (item.get("type") if isinstance(item, dict) else None)
        kind += f"/{detail}" if detail else ""
        lines.append(f"[{kind}] {json.dumps(event, ensure_ascii=False)[:2000]}")
    return _text_block(f"{path.name} ({len(lines)} events)", "\n".join(lines), secrets)


def _html(text: str, secrets: Sequence[str]) -> str:
    return escape(clean_text(text, secrets=secrets))


def _turn_chart(summary: list[SummaryRow], secrets: Sequence[str]) -> str:
    """A line per (model, condition) of its pass rate by each turn, the rate written at each
    point; then the same numbers as a table, for a reader who cannot see the chart."""
    rows = [row for row in summary if row.pass_at_turn]
    models = list(dict.fromkeys(row.model for row in summary))
    conditions = list(dict.fromkeys(row.condition for row in summary))
    most = max(int(turn) for row in rows for turn in row.pass_at_turn)
    step, height, top, left = 90, 200, 40, 44
    right = left + 40 + step * (most - 1) + 40
    described = "; ".join(f"{row.model} {row.condition}: {_curve(row)}" for row in rows)
    shapes = [
        "<h2>Pass rate by turn</h2>",
        f'<svg id="pass-at-turn" xmlns="http://www.w3.org/2000/svg" width="{right + 320}" '
        f'height="{height + top * 2 + 10}" role="img" '
        'aria-labelledby="pass-at-turn-title pass-at-turn-desc">',
        '<title id="pass-at-turn-title">pass rate by turn per model and condition</title>',
        f'<desc id="pass-at-turn-desc">{_html(described, secrets)}</desc>',
    ]
    for tick in (0, 0.5, 1):
        y = top + height * (1 - tick)
        shapes += [
            f'<line x1="{left}" y1="{y:.0f}" x2="{right}" y2="{y:.0f}" stroke="#ddd"/>',
            f'<text x="4" y="{y + 4:.0f}" font-size="11">{tick:.0%}</text>',
        ]
    for number in range(1, most + 1):
        x = left + 40 + step * (number - 1)
        shapes.append(
            f'<text x="{x - 14}" y="{top + height + 34}" font-size="12">turn {number}</text>'
        )
    for s, row in enumerate(rows):
        # The condition's colour, as in the chart above; a dash per model tells models apart.
        colour = _COLOURS[conditions.index(row.condition) % len(_COLOURS)]
        dash = _DASHES[models.index(row.model) % len(_DASHES)]
        points = [
            (turn, rate, left + 40 + step * (int(turn) - 1), top + height * (1 - rate))
            for turn, rate in row.pass_at_turn.items()
        ]
        line = " ".join(f"{x:.0f},{y:.1f}" for _, _, x, y in points)
        shapes.append(
            f'<polyline class="turn-line" points="{line}" fill="none" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{dash}"/>'
        )
        name = f"{row.model} {row.condition}"
        # Each line's numbers at its own height beside the point: equal rates stay legible.
        shift = (s - (len(rows) - 1) / 2) * 11
        for turn, rate, x, y in points:
            label = _html(f"{name}: turn {turn} {rate:.0%}", secrets)
            shapes += [
                f'<circle class="turn-point" cx="{x:.0f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{label}</title></circle>",
                f'<text class="turn-value" x="{x + 6:.0f}" y="{y + shift + 4:.1f}" '
                f'font-size="10" fill="{colour}">{rate:.0%}</text>',
            ]
        y = top + 16 * s
        shapes += [
            f'<line x1="{right + 20}" y1="{y + 5}" x2="{right + 44}" y2="{y + 5}" '
            f'stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>',
            f'<text x="{right + 50}" y="{y + 9}" font-size="11">{_html(name, secrets)}</text>',
        ]
    shapes.append("</svg>")
    return "\n".join([*shapes, _turn_table(rows, most, secrets)])


def _curve(row: SummaryRow) -> str:
    return ", ".join(f"turn {turn} {rate:.0%}" for turn, rate in row.pass_at_turn.items())


def _turn_table(rows: list[SummaryRow], most: int, secrets: Sequence[str]) -> str:
    """The chart's numbers: a row per (model, condition), a column per turn."""
    turns = [str(number) for number in range(1, most + 1)]
    cells = ["<tr><th>model</th><th>condition</th>", *(f"<th>turn {t}</th>" for t in turns)]
    for row in rows:
        rates = (row.pass_at_turn.get(turn) for turn in turns)
        named = (_html(row.model, secrets), _html(row.condition, secrets))
        cells += [
            "</tr><tr>",
            *(f"<td>{name}</td>" for name in named),
            *(f"<td>{'' if rate is None else f'{rate:.0%}'}</td>" for rate in rates),
        ]
    return '<table class="pass-at-turn">' + "".join(cells) + "</tr></table>"


def _turn_sections(
    record: SampleRecord, directory: Path, secrets: Sequence[str]
) -> tuple[list[str], Path]:
    """Each turn in order: where it ended and what it spent, what the model was told that
    turn (turn 1: the whole prompt) and its reply; and the last project folder it built."""
    logged = {turn.turn: turn for turn in record.per_turn}
    parts: list[str] = []
    project = directory / "project"
    previous = ""  # the turn before's prompt and reply, to tell this turn's message from them
    for number in range(1, max(record.turns, *logged, 1) + 1):
        folder = directory if number == 1 else directory / f"turn-{number}"
        prefix = "" if number == 1 else f"turn-{number}/"
        parts += [
            '<section class="turn">',
            f"<h3>{_html(_turn_title(number, logged), secrets)}</h3>",
        ]
        prompt, reply = _read(folder / "prompt.md"), _read(folder / "reply.md")
        if prompt is not None:
            told, whole = _told(previous, prompt) if number > 1 else (prompt, True)
            label = f"{prefix}prompt.md" + ("" if whole else ": what the model was told")
            parts.append(_text_block(label, told, secrets))
        if reply is not None:
            parts.append(_text_block(f"{prefix}reply.md", reply, secrets))
        parts.append("</section>")
        said = prompt is not None and reply is not None
        previous = f"{prompt}\n# Assistant\n\n{reply}\n" if said else ""
        # Tools mode may build more than once a turn: project/, project-2/, ...
        built = 1
        while (candidate := folder / _project_name(built)).is_dir():
            project, built = candidate, built + 1
    return parts, project


def _project_name(built: int) -> str:
    return "project" if built == 1 else f"project-{built}"


def _turn_title(number: int, logged: dict[int, TurnRecord]) -> str:
    turn = logged.get(number)
    if turn is None:
        return f"Turn {number}"
    title = f"Turn {number}: {turn.outcome} at {turn.stage}"
    if turn.reason:
        title += f": {turn.reason}"
    title += (
        f"; {turn.input_tokens:,} tokens in, {turn.output_tokens:,} out, {turn.latency_s:.1f} s"
    )
    if turn.tool_calls:
        title += f"; called {', '.join(turn.tool_calls)}"
    return title


def _told(previous: str, prompt: str) -> tuple[str, bool]:
    """The message that this turn's prompt adds after the turn before's prompt and reply (its
    feedback, or its tool results), and False; the whole prompt and True when it does not
    start with them (a folder edited since, say)."""
    asked = f"{previous}\n# User\n\n"
    if previous and prompt.startswith(asked):
        return prompt[len(asked) :].removesuffix("\n"), False
    return prompt, True


def _read(path: Path) -> str | None:
    if not path.is_file() or path.is_symlink():
        return None
    return path.read_text(encoding="utf-8", errors="replace")


def _file_block(label: str, path: Path, secrets: Sequence[str]) -> str:
    text = _read(path)
    return "" if text is None else _text_block(label, text, secrets)


def _text_block(label: str, text: str, secrets: Sequence[str]) -> str:
    # Cleaned whole, then cut: a cut first could split a secret and show its first half.
    text = clean_text(text, secrets=secrets)
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + f"\n… ({len(text) - _MAX_TEXT} more characters)"
    return f"<h4>{_html(label, secrets)}</h4><pre>{escape(text)}</pre>"
