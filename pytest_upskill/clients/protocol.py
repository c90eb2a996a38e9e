"""What each agent CLI adapter tells the runner: how to start it headless, where its skills
go, which credentials its provider needs, and what its JSON output says at the end."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "HOME",
    "PLACEHOLDER_KEY",
    "WORKSPACE",
    "Client",
    "Launch",
    "Summary",
    "json_events",
    "number",
]

# Where the CLI works and what it sees as its home, inside its sandbox: the same paths in
# every run, wherever the session keeps them.
WORKSPACE = Path("/workspace")
HOME = Path("/home/agent")

# The key the sandboxed CLI holds: the proxy replaces it with the real one on the way out.
PLACEHOLDER_KEY = "sk-upskill-placeholder-the-proxy-holds-the-key"


@dataclass(frozen=True)
class Launch:
    """The CLI's command line and the variables it is started with, inside the sandbox."""

    argv: list[str]
    environ: dict[str, str]


@dataclass(frozen=True)
class Summary:
    """What the CLI's own output says of its run: its last message, the cost it
    counted (None where it counts none), the error it ended with ('' if none). Read from a
    sandboxed program's output: shown, never used to decide an outcome."""

    text: str = ""
    cost_usd: float | None = None
    error: str = ""


class Client(Protocol):
    """One agent CLI."""

    name: str  # as in agent:NAME
    program: str  # the executable on PATH
    install: str  # the command that installs it
    base_variable: str  # the variable that names its API's base URL outside the sandbox
    default_base_url: str
    # What the proxy forwards: (method, path under the base URL); the rest is refused.
    routes: tuple[tuple[str, str], ...]

    def credentials(self, environ: Mapping[str, str]) -> dict[str, str] | None:
        """The headers that carry this process's key for the API (None: no key is set)."""
        ...

    def missing_key(self) -> str:
        """What to set when `credentials` finds no key, in words."""
        ...

    def skills_dir(self, workspace: Path) -> Path:
        """Where the client loads a project's skills from."""
        ...

    def launch(
        self, program: str, prompt: str, model: str, base_url: str, turns: int | None, home: Path
    ) -> Launch:
        """Start the CLI headless on `prompt`, with JSON events on stdout, its model API at
        `base_url` (the proxy), allowed to edit and run what it likes in its working folder
        (the sandbox is the boundary), at most `turns` turns where the CLI counts them. Its
        settings may be written under `home`, the folder it sees as its home."""
        ...

    def summary(self, events: list[dict[str, Any]]) -> Summary:
        """What its JSON events say at the end."""
        ...


def json_events(text: str, limit: int = 100_000) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines stream, the rest left out, `limit` at most."""
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
            if len(events) >= limit:
                break
    return events


def number(value: Any) -> float | None:
    """A finite, non-negative number from a program's output, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None
