"""Reading a JSON file nobody vouches for (a report from a CI artifact, a colleague's file):
its size, encoding, nesting, numbers and strings bounded, and every problem one short line
that quotes the file only cleaned and cut short."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..sanitize import clean_text

__all__ = ["ReportInvalid", "problem", "read_json", "shown"]

_MAX_BYTES = 1 << 30  # a report of a million samples is well under this
_MAX_STRING = 100_000  # characters: a reason is one line, a path a path
_MAX_DIGITS = 30  # of a whole number: token counts and times are far shorter
_SURROGATE = re.compile("[\ud800-\udfff]")


class ReportInvalid(Exception):
    """A file that cannot be read as a pytest-upskill report; the message is one line."""


def shown(value: object, limit: int = 80) -> str:
    """A value from a file, safe and short enough for a one-line message."""
    text = clean_text(value if isinstance(value, str) else json.dumps(value))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {shown(text, 20)} is out of range")
    return number


def _whole(text: str) -> int:
    if len(text) > _MAX_DIGITS:  # Python refuses a few thousand digits anyway, in its words
        raise ValueError(f"a number of {len(text)} digits is out of range")
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number a report may hold")


def _bad_string(value: object) -> str | None:
    """What is wrong with the first string that is too long or not text (a lone surrogate,
    which a JSON escape can hold but no report writes), and where it is; None if none is."""
    stack: list[tuple[object, str]] = [(value, "the top")]
    while stack:
        item, at = stack.pop()
        strings = [item] if isinstance(item, str) else list(item) if isinstance(item, dict) else []
        for text in strings:
            if len(text) > _MAX_STRING:
                return f"a string longer than {_MAX_STRING:,} characters (at {at})"
            if _SURROGATE.search(text):
                return f"a string that is not text (a lone surrogate, at {at})"
        if isinstance(item, dict):
            stack.extend((child, _at(at, shown(key, 40))) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, _at(at, str(index))) for index, child in enumerate(item))
    return None


def _at(where: str, part: str) -> str:
    return part if where == "the top" else f"{where}.{part}"


def read_json(path: Path) -> object:
    """The JSON document in `path`; ReportInvalid, naming the file, for anything else."""
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise ReportInvalid(f"{path}: {size:,} bytes, more than a report can be")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ReportInvalid(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReportInvalid(f"{path}: is not UTF-8 text, so not a JSON report") from None
    try:
        document = json.loads(
            text, parse_float=_finite, parse_int=_whole, parse_constant=_no_constant
        )
    except (ValueError, RecursionError) as exc:
        reason = "it nests too deep" if isinstance(exc, RecursionError) else shown(str(exc), 120)
        raise ReportInvalid(f"{path}: is not valid JSON: {reason}") from None
    bad = _bad_string(document)
    if bad is not None:
        raise ReportInvalid(f"{path}: holds {bad}, which no report writes")
    return document


def problem(error: ValidationError) -> str:
    """The first problem pydantic found, where it is and what, and how many more."""
    first = error.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(shown(str(part), 40) for part in first["loc"]) or "the top"
    more = error.error_count() - 1
    extra = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"{where}: {shown(first['msg'], 200)}{extra}"
