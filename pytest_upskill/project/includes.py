"""What a C++ source includes and what its compile read or asked for, from their texts:
the source's first directive, g++'s depfile, and the `__has_include` probes of the headers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["depfile_paths", "first_include", "probed"]

_INCLUDE = re.compile(r'#[ \t]*include[ \t]*(<[^<>"\n]+>|"[^<>"\n]+")[ \t\r]*(?://[^\n]*)?(?:\n|$)')
_BLANK = " \t\r\n\f\v"
# `__has_include(<x>)`, `__has_include_next("x")` and the macros that wrap them
# (`FMT_HAS_INCLUDE(<x>)`): a project's own `x` changes the answer.
_PROBE = re.compile(rb'has_include\w*\s*\(\s*[<"]([^<>"\n]+)[>"]', re.IGNORECASE)


def first_include(text: str) -> tuple[str, bool] | None:
    """The header a source's first directive includes and whether it is quoted, when nothing
    but blank space and comments comes before it; else None. One pass over the text."""
    at, end = 0, len(text)
    while at < end:
        if text[at] in _BLANK:
            at += 1
        elif text.startswith("//", at):
            newline = text.find("\n", at)
            if newline < 0 or text[at:newline].rstrip(" \t\r").endswith("\\"):
                return None  # a comment continued on the next line (g++ allows blanks after)
            at = newline + 1
        elif text.startswith("/*", at):
            close = text.find("*/", at + 2)
            if close < 0:
                return None
            at = close + 2
        else:
            break
    match = _INCLUDE.match(text, at)
    if match is None:
        return None
    name = match.group(1)
    return name[1:-1], name[0] == '"'


def depfile_paths(text: str) -> list[str]:
    """The prerequisites of a make rule as g++ writes it (`-MD`): `\\ ` is a space, `\\#` a
    `#`, `$$` a `$`, and a backslash before a line break joins the lines."""
    tokens: list[str] = []
    current: list[str] = []
    at = 0
    while at < len(text):
        char, following = text[at], text[at + 1 : at + 2]
        if char == "\\" and following in (" ", "#"):
            current.append(following)
            at += 2
            continue
        if char == "\\" and following in ("\n", "\r"):
            char, at = " ", at + 1
        elif char == "$" and following == "$":
            at += 1
        if char in " \t\r\n":
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
        at += 1
    if current:
        tokens.append("".join(current))
    target = next((i for i, token in enumerate(tokens) if token.endswith(":")), len(tokens))
    return tokens[target + 1 :]


def probed(paths: Iterable[str]) -> set[str]:
    """The headers that the files at `paths` probe for, as named in the probes."""
    names: set[str] = set()
    for path in paths:
        with contextlib.suppress(OSError):
            text = Path(path).read_bytes()
            names.update(found.decode(errors="replace") for found in _PROBE.findall(text))
    return names
