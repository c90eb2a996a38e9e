"""Claude Code (`@anthropic-ai/claude-code`): `claude -p` with stream-json output, its skills in
`.claude/skills/NAME/` of the project, the Messages API at ANTHROPIC_BASE_URL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .protocol import PLACEHOLDER_KEY, Launch, Summary, number

__all__ = ["ClaudeCode"]


class ClaudeCode:
    name = "claude-code"
    program = "claude"
    install = "npm install -g @anthropic-ai/claude-code"
    base_variable = "ANTHROPIC_BASE_URL"
    default_base_url = "https://api.anthropic.com"
    routes: tuple[tuple[str, str], ...] = (
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
    )

    def credentials(self, environ: Mapping[str, str]) -> dict[str, str] | None:
        if environ.get("ANTHROPIC_API_KEY"):
            return {"x-api-key": environ["ANTHROPIC_API_KEY"]}
        if environ.get("ANTHROPIC_AUTH_TOKEN"):
            return {"authorization": f"Bearer {environ['ANTHROPIC_AUTH_TOKEN']}"}
        return None

    def missing_key(self) -> str:
        return "ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) is not set"

    def skills_dir(self, workspace: Path) -> Path:
        return workspace / ".claude" / "skills"

    def launch(
        self, program: str, prompt: str, model: str, base_url: str, turns: int | None, home: Path
    ) -> Launch:
        argv = [
            program,
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            # The sandbox is the boundary: inside it, every edit and command runs unasked.
            "--permission-mode",
            "bypassPermissions",
            # The workspace's settings and skills only: never a user's (its home is empty).
            "--setting-sources",
            "project",
            "--no-session-persistence",
        ]
        if model:
            argv += ["--model", model]
        if turns is not None:
            argv += ["--max-turns", str(turns)]
        environ = {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": PLACEHOLDER_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "IS_SANDBOX": "1",  # bypassPermissions as root (CI): the sandbox is ours
            # Its own bundled skills would be listed in the baseline too: the installed skill
            # is then the only one.
            "CLAUDE_CODE_DISABLE_BUNDLED_SKILLS": "1",
        }
        return Launch(argv, environ)

    def summary(self, events: list[dict[str, Any]]) -> Summary:
        result = next((e for e in reversed(events) if e.get("type") == "result"), None)
        if result is None:
            return Summary(error="no result event: the CLI was stopped or failed")
        text = result.get("result")
        error = ""
        # An API error ends as subtype "success" with is_error set.
        if result.get("is_error") or result.get("subtype") != "success":
            error = str(result.get("subtype") or "error")
            if isinstance(text, str):
                error += f": {text[:300]}"
        return Summary(
            text=text if isinstance(text, str) else "",
            cost_usd=number(result.get("total_cost_usd")),
            error=error,
        )
