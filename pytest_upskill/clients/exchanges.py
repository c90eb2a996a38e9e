"""What a cassette keeps of one agent CLI's request and its answer, and the tokens an answer
counts: the proxy records these, and replays them, after validation, as they were."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["RECORD_CAP", "Exchange", "plain_content_type", "usage_of"]

RECORD_CAP = 16 << 20  # a response larger than this is forwarded but not recorded whole
_TOKEN = r"[\w!#$&'*+.^`|~-]+"
_COUNT = re.compile(
    r'"(input_tokens|output_tokens|prompt_tokens|completion_tokens|'
    r'cache_creation_input_tokens|cache_read_input_tokens)"\s*:\s*(\d{1,12})'
)
_CONTENT_TYPE = rf"({_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\r\n\\]*\"))*)?"


class Exchange(BaseModel):
    """One request the CLI sent and the endpoint's answer, as a cassette keeps it: validated
    where it enters, since a cassette may be edited or hostile."""

    method: str = Field(pattern=r"^[A-Z]{1,10}$")
    path: str = Field(max_length=2000, pattern=r"^/[^\r\n]*$")
    model: str = Field(default="", max_length=200)
    request_sha256: str = ""  # what was asked, to see a replay drift; the body is not kept
    status: int = Field(ge=200, le=599)
    content_type: str = Field(default="", max_length=200, pattern=rf"^{_CONTENT_TYPE}$")
    body: str = Field(max_length=RECORD_CAP)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


def usage_of(body: str) -> tuple[int, int]:
    """Input and output tokens of one response: JSON or server-sent events, in Anthropic's,
    OpenAI's Chat Completions or Responses shapes (the largest counts seen: a stream repeats
    them as they grow). A document too deep to parse is read for its counts by pattern: a
    response nested past the parser's depth must still count."""
    tokens = [0, 0]
    text = body.strip()
    pieces = (
        [text]
        if text.startswith("{")
        else [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
    )
    for piece in pieces:
        document = _json(piece)
        found = list(_usages(document)) if document is not None else _usage_by_pattern(piece)
        for usage in found:
            got_in = usage.get("input_tokens", usage.get("prompt_tokens"))
            got_out = usage.get("output_tokens", usage.get("completion_tokens"))
            for cache in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                if isinstance(usage.get(cache), int) and isinstance(got_in, int):
                    got_in += usage[cache]
            if isinstance(got_in, int) and got_in >= 0:
                tokens[0] = max(tokens[0], got_in)
            if isinstance(got_out, int) and got_out >= 0:
                tokens[1] = max(tokens[1], got_out)
    return tokens[0], tokens[1]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _usage_by_pattern(text: str) -> list[dict[str, Any]]:
    """The largest of each count named in `text`, as one usage object."""
    usage: dict[str, Any] = {}
    for name, value in _COUNT.findall(text):
        usage[name] = max(usage.get(name, 0), int(value))
    return [usage] if usage else []


def _usages(document: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every `usage` object in a response document, a few levels down at most."""
    if not isinstance(document, dict) or depth > 3:
        return
    usage = document.get("usage")
    if isinstance(usage, dict):
        yield usage
    for value in document.values():
        if isinstance(value, dict):
            yield from _usages(value, depth + 1)


def plain_content_type(value: str) -> str:
    """The endpoint's content type as a cassette may hold it ('' if it is not plain)."""
    return value if len(value) <= 200 and re.fullmatch(_CONTENT_TYPE, value) else ""
