"""`openai:MODEL` and `openai:MODEL@BASE_URL`: Chat Completions through the official SDK, for
OpenAI and for any OpenAI-compatible server (vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from . import MAX_RETRIES, Reply, Request, Usage
from ._sdk import sdk_error

if TYPE_CHECKING:
    import openai

    from ..config import ModelSpec

__all__ = ["OpenAIProvider"]


class OpenAIProvider:
    """Key and base URL come from the SDK's variables (OPENAI_API_KEY, OPENAI_BASE_URL) unless the
    spec names a base URL; a server named that way may need no key."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def missing_key(self) -> str | None:
        if self.spec.base_url or os.environ.get("OPENAI_API_KEY"):
            return None
        return (
            "OPENAI_API_KEY is not set: export it to ask openai models, "
            "or replay recorded replies with --upskill-record=none"
        )

    def prepare(self) -> None:
        self._connect()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()

    def generate(self, request: Request) -> Reply:
        import openai

        client = self._connect()
        params: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [
                {"role": "system", "content": request.prompt.system},
                {"role": "user", "content": request.prompt.user},
            ],
        }
        # OpenAI's own API has renamed the limit; compatible servers know the old name.
        compatible = self.spec.base_url or os.environ.get("OPENAI_BASE_URL")
        params["max_tokens" if compatible else "max_completion_tokens"] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        start = time.perf_counter()
        try:
            completion = client.chat.completions.create(**params)
        except openai.OpenAIError as exc:
            raise sdk_error(exc, self.spec.label, str(client.base_url)) from None
        text = completion.choices[0].message.content or "" if completion.choices else ""
        usage = completion.usage
        return Reply(
            text=text,
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
            latency_s=time.perf_counter() - start,
        )

    def _connect(self) -> openai.OpenAI:
        with self._lock:  # one client (one connection pool) for every thread
            if self._client is None:
                import openai

                key = os.environ.get("OPENAI_API_KEY") or ("unused" if self.spec.base_url else None)
                self._client = openai.OpenAI(
                    api_key=key, base_url=self.spec.base_url, max_retries=MAX_RETRIES
                )
            return self._client
