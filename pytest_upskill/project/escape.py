"""Text on its way into build.ninja, where a line break is a new rule and a rule is a shell
command: every value of build.toml, and every path, passes through here."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from ..errors import SampleFailed

__all__ = ["ninja_args", "ninja_path", "no_line_breaks"]


def no_line_breaks(text: str) -> str:
    # Stage policy refuses control characters in build.toml; this is the last line of defence,
    # since a line break in build.ninja is a new rule, and a rule is a shell command.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise SampleFailed("build", f"refusing a control character in {text[:60]!r}")
    return text


def ninja_path(path: str) -> str:
    """A path in a ninja `build` line."""
    return no_line_breaks(path).replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def ninja_args(args: Iterable[str]) -> str:
    """Arguments for a ninja variable that a rule's shell command expands: quoted for the
    shell, `$` escaped for ninja. Every value of build.toml passes through here."""
    return shlex.join(no_line_breaks(arg) for arg in args).replace("$", "$$")
