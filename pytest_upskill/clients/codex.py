"""Codex (`@openai/codex`): `codex exec --json`, its skills in `.agents/skills/NAME/` of the
project, the Responses API at a provider of its own whose base URL is the proxy's.

Its settings go in a CODEX_HOME of the run's own (the CLI refuses to start without one): our
sandbox instead of its own, no approvals, and nothing it would contact besides the model
(plugins, analytics, update checks, web search, bundled skills off).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .protocol import HOME, PLACEHOLDER_KEY, Launch, Summary

__all__ = ["Codex"]

_CONFIG = """\
model_provider = "upskill"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false
web_search = "disabled"

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"

[history]
persistence = "none"

[features]
plugins = false
remote_plugin = false
apps = false
unbounded_connection_retries = false
shell_snapshot = false

[skills.bundled]
enabled = false

[model_providers.upskill]
name = "upskill"
base_url = {base_url}
env_key = "OPENAI_API_KEY"
wire_api = "responses"
"""


class Codex:
    name = "codex"
    program = "codex"
    install = "npm install -g @openai/codex"
    base_variable = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    routes: tuple[tuple[str, str], ...] = (("POST", "/responses"),)

    def credentials(self, environ: Mapping[str, str]) -> dict[str, str] | None:
        key = environ.get("OPENAI_API_KEY")
        return {"authorization": f"Bearer {key}"} if key else None

    def missing_key(self) -> str:
        return "OPENAI_API_KEY is not set"

    def skills_dir(self, workspace: Path) -> Path:
        return workspace / ".agents" / "skills"

    def launch(
        self, program: str, prompt: str, model: str, base_url: str, turns: int | None, home: Path
    ) -> Launch:
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        # A TOML basic string is a JSON string: quotes and backslashes escaped alike.
        config = _CONFIG.replace("{base_url}", json.dumps(base_url))
        (codex_home / "config.toml").write_text(config, encoding="utf-8")
        argv = [program, "exec", "--json", "--skip-git-repo-check", "--ephemeral"]
        if model:
            argv += ["--model", model]
        # Codex counts no turns it could be limited to: the time and token limits bound it.
        return Launch(
            [*argv, "--", prompt],
            {"CODEX_HOME": str(HOME / ".codex"), "OPENAI_API_KEY": PLACEHOLDER_KEY},
        )

    def summary(self, events: list[dict[str, Any]]) -> Summary:
        said = [
            e["item"].get("text")
            for e in events
            if e.get("type") == "item.completed"
            and isinstance(e.get("item"), dict)
            and e["item"].get("type") == "agent_message"
        ]
        failed = next((e for e in reversed(events) if e.get("type") == "turn.failed"), None)
        error = ""
        if failed is not None:
            detail = failed.get("error")
            message = detail.get("message") if isinstance(detail, dict) else None
            error = str(message or "turn.failed")[:300]
        elif not any(e.get("type") == "turn.completed" for e in events):
            error = "no turn.completed event: the CLI was stopped or failed"
        text = said[-1] if said and isinstance(said[-1], str) else ""
        return Summary(text=text, error=error)
