"""`anthropic:MODEL`: Anthropic's Messages API through the official SDK, streamed.

The API (version 2026-10-21, which SDK 2.x sends) takes no sampling parameters: the session
sends these models no temperature and records none.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from . import MAX_RETRIES, Reply, Request, Usage
from ._sdk import sdk_error

if TYPE_CHECKING:
    import anthropic

    from ..config import ModelSpec

__all__ = ["AnthropicProvider"]


class AnthropicProvider:
    """Key and base URL come from the SDK's variables: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._client: anthropic.Anthropic | None = None
        self._lock = threading.Lock()

    def missing_key(self) -> str | None:
        if os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            return None
        return (
            "ANTHROPIC_API_KEY is not set: export it to ask anthropic models, "
            "or replay recorded replies with --upskill-record=none"
        )

    def prepare(self) -> None:
        self._connect()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()

    def generate(self, request: Request) -> Reply:
        import anthropic

        client = self._connect()
        params: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": request.max_tokens,
            "system": request.prompt.system,
            "messages": [{"role": "user", "content": request.prompt.user}],
        }
        start = time.perf_counter()
        try:
            # Streamed: the SDK refuses long non-streaming requests, and kernel replies are long.
            with client.messages.stream(**params) as stream:
                message = stream.get_final_message()
        except anthropic.AnthropicError as exc:
            raise sdk_error(exc, self.spec.label, str(client.base_url)) from None
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = Usage(message.usage.input_tokens, message.usage.output_tokens)
        return Reply(text=text, usage=usage, latency_s=time.perf_counter() - start)

    def _connect(self) -> anthropic.Anthropic:
        with self._lock:  # one client (one connection pool) for every thread
            if self._client is None:
                import anthropic

                self._client = anthropic.Anthropic(max_retries=MAX_RETRIES)
            return self._client
