"""Text from outside made safe to show: what a model, its build or a skill wrote reaches the
terminal, the reports and JUnit, and none of it may drive the reader's terminal, render as
Markdown, or carry a secret this process holds.

Standard library and `.environ` only: `errors` imports this module at pytest start-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .environ import withheld_secrets

__all__ = ["clean_text", "each_string", "markdown_text", "redacted"]

_REDACTED = "[redacted]"

# What a terminal acts on, in 7-bit (ESC ...) and 8-bit (C1) forms: the string commands (DCS,
# OSC, SOS, PM, APC) up to their terminator (BEL or ST), then CSI with its parameters, then any
# other escape sequence. An unterminated string command loses only its introducer (the control
# pass below), so the text after it stays visible.
_SEQUENCE = re.compile(
    r"""
    (?:\x1b[P\]X^_]|[\x90\x98\x9d\x9e\x9f]) [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)
    | (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]
    | \x1b [\x20-\x2f]* [\x30-\x7e]
    """,
    re.VERBOSE,
)
# Every other C0 and C1 control goes, `\r` too (it lets a line overwrite itself); tab and newline
# stay. Unicode's line separators become spaces: some viewers break lines on them, some do not.
_CONTROLS: dict[int, str | None] = {
    code: None for code in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if code not in (0x09, 0x0A)
}
_CONTROLS.update({0x85: " ", 0x2028: " ", 0x2029: " "})

# Every ASCII punctuation character, which CommonMark lets a backslash make literal; `-` and `_`
# between two ASCII letters or digits stay as they are (they cannot start a list, a rule or an
# emphasis there), so names like cpu-kernels and test_row_softmax read as written.
_MARKDOWN = re.compile(r"(?<=[A-Za-z0-9])[-_](?=[A-Za-z0-9])|([!-/:-@\[-`{-~])")
_BLANKS = re.compile(r"[\t\n]")


def clean_text(text: str, *, secrets: Sequence[str] | None = None) -> str:
    """`text` without terminal control sequences or control characters (but for tab and
    newline), and with every secret this process withholds from generated code replaced by
    `[redacted]`. `secrets`: those values, when the caller has already read them (one read of
    the environment for a whole report); by default they are read now."""
    if secrets is None:
        secrets = withheld_secrets()
    # Before and after: a secret holding a control character is found whole, one split by an
    # escape sequence once the sequence is gone.
    text = _redact(text, secrets)
    text = _SEQUENCE.sub("", text).translate(_CONTROLS)
    return _redact(text, secrets)


def markdown_text(text: str, *, secrets: Sequence[str] | None = None) -> str:
    """`clean_text`, then escaped to read as plain text on one line of GitHub-flavoured
    Markdown, a table cell included: no heading, list, link, image, HTML, or cell boundary."""
    text = _BLANKS.sub(" ", clean_text(text, secrets=secrets))
    return _MARKDOWN.sub(_escape, text)


def redacted(text: str) -> str:
    """`text` with every secret this process withholds from generated code replaced by
    `[redacted]`, and nothing else changed (a reply kept to be replayed)."""
    return _redact(text, withheld_secrets())


def each_string(value: object, clean: Callable[[str], str]) -> object:
    """`value` (JSON-like: dicts, lists, tuples, scalars) with `clean` applied to every string
    in it, keys included: a whole document made safe in one pass."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {each_string(key, clean): each_string(item, clean) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [each_string(item, clean) for item in value]
    return value


def _escape(match: re.Match[str]) -> str:
    character = match.group(1)
    return match.group() if character is None else "\\" + character


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:  # longest first, so a secret inside another goes with it
        if secret in text and secret not in _REDACTED:
            text = text.replace(secret, _REDACTED)
    return text
