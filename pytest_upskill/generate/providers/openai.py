"""`openai:MODEL` and `openai:MODEL@BASE_URL`: Chat Completions through the official SDK, for
OpenAI and for any OpenAI-compatible server (vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ._sdk import SDKProvider, sdk_error
from .protocol import MAX_RETRIES, Reply, Request, Usage

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIProvider"]


class OpenAIProvider(SDKProvider["openai.OpenAI"]):
    """Key and base URL come from the SDK's variables (OPENAI_API_KEY, OPENAI_BASE_URL) unless the
    spec names a base URL; a server named that way may need no key."""

    key_variables = ("OPENAI_API_KEY",)

    def needs_key(self) -> bool:
        return self.spec.base_url is None

    def make_client(self) -> openai.OpenAI:
        import openai

        key = os.environ.get("OPENAI_API_KEY") or ("unused" if self.spec.base_url else None)
        return openai.OpenAI(api_key=key, base_url=self.spec.base_url, max_retries=MAX_RETRIES)

    def generate(self, request: Request) -> Reply:
        import openai

        client = self.client()
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
        text = (completion.choices[0].message.content or "") if completion.choices else ""
        usage = completion.usage
        return Reply(
            text=text,
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
            latency_s=time.perf_counter() - start,
        )
