"""How the replies came: repeated, cut at the token limit, or from a server that generated one
at a time while others waited.

A llama.cpp server with one slot (Ollama by default) generates one reply at a time and queues
the rest, so a sample's latency is mostly its wait. From the times each reply records (sent at,
first token, last token), such a server shows as requests that were open together while no two
replies were ever being generated together.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..sanitize import clean_text
from .results import SampleRecord, Statistics
from .tables import Text

__all__ = ["one_at_a_time", "reply_lines"]

_FEWEST = 3  # replies it takes to tell
_SLACK_S = 0.01  # clocks and scheduling: overlaps shorter than this do not count


def one_at_a_time(records: Iterable[SampleRecord]) -> dict[str, int]:
    """Model -> the most requests that were open at once, for each model whose server generated
    its replies one at a time while several requests were open."""
    windows: dict[str, list[tuple[float, float, float]]] = {}
    for record in records:
        first = record.first_token_s
        if record.started_at is None or first is None or record.cached:
            continue
        start = record.started_at
        windows.setdefault(record.model, []).append(
            (start, start + first, start + record.latency_s)
        )
    found = {}
    for model, spans in windows.items():
        if len(spans) < _FEWEST:
            continue
        open_at_once = _most_at_once([(start, end) for start, _, end in spans])
        generating = _most_at_once([(first, end) for _, first, end in spans])
        if open_at_once > 1 and generating == 1:
            found[model] = open_at_once
    return found


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans that overlap at one instant (by more than the slack)."""
    events = [(start + _SLACK_S, 1) for start, end in spans if end - start > 2 * _SLACK_S]
    events += [(end - _SLACK_S, -1) for start, end in spans if end - start > 2 * _SLACK_S]
    most = current = 0
    for _, change in sorted(events, key=lambda event: (event[0], event[1])):
        current += change
        most = max(most, current)
    return most


def reply_lines(stats: Statistics, text: Text = clean_text) -> list[str]:
    """What the reports should say about the replies themselves, one line each."""
    lines = []
    for row in stats.summary:
        who = f"{text(row.model)} {text(row.condition)}"
        if row.duplicate_replies:
            lines.append(
                f"{who}: {row.duplicate_replies} sample(s) repeat another sample's reply to the "
                "same test word for word (temperature 0, a seed, a server's cache): they are "
                "not independent draws"
            )
        if row.truncated:
            lines.append(
                f"{who}: {row.truncated} reply(ies) cut at the token limit: raise "
                "--upskill-max-tokens if the model needs the room"
            )
    generation = {
        row.model: row.mean_generation_s
        for row in stats.summary
        if row.mean_generation_s is not None
    }
    for model, most in one_at_a_time(stats.records).items():
        mean = generation.get(model)
        spent = f" ({mean:.1f} s on average)" if mean is not None else ""
        lines.append(
            f"{text(model)}: its server generated one reply at a time while up to {most} "
            "requests waited: latency is mostly its queue. Compare generation times"
            f"{spent}, or run it with --upskill-concurrency=1"
        )
    return lines
