"""Agent CLIs as the model under test: Claude Code and Codex, each run headless in a sandboxed
workspace with the skill installed where that client loads skills.

`protocol` is what an adapter says about its CLI (one module per CLI: `claude_code`, `codex`);
`run` starts it in its sandbox behind the model `proxy` (reached through the `bridge` inside),
which records and replays `exchanges`; `workspace` seeds and harvests its folder; `provider`
makes it a provider, recording and replaying its traffic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import Client

__all__ = ["client_for"]


def client_for(name: str) -> Client:
    """The adapter of the agent CLI `name` (one of `config.AGENT_CLIENTS`)."""
    if name == "claude-code":
        from .claude_code import ClaudeCode

        return ClaudeCode()
    if name == "codex":
        from .codex import Codex

        return Codex()
    raise ValueError(f"unknown agent CLI {name!r}")
