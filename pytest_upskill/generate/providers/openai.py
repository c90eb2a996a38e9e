"""`openai:MODEL` and `openai:MODEL@BASE_URL`: Chat Completions through the official SDK, for
OpenAI and for any OpenAI-compatible server (vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ...config import public_url
from ._sdk import SDKProvider, Stopwatch, sdk_error, sdk_problem
from .protocol import MAX_RETRIES, Reply, Request, Usage

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIProvider"]

_CHECK_TIMEOUT_S = 5.0  # a server that does not answer its model list in this is not there


class OpenAIProvider(SDKProvider["openai.OpenAI"]):
    """Key and base URL come from the SDK's variables (OPENAI_API_KEY, OPENAI_BASE_URL) unless the
    spec names a base URL; a server named that way may need no key."""

    key_variables = ("OPENAI_API_KEY",)

    def needs_key(self) -> bool:
        return self.spec.base_url is None

    def make_client(self) -> openai.OpenAI:
        import openai

        key = os.environ.get("OPENAI_API_KEY") or ("unused" if self.spec.base_url else None)
        return openai.OpenAI(
            api_key=key,
            base_url=self.spec.base_url,
            max_retries=MAX_RETRIES,
            timeout=self.timeout_s,
        )

    def check(self) -> tuple[str | None, str | None]:
        """A server named by its base URL: is it there, and does it list the model? Servers
        that list no models (no /models route) are taken at their word."""
        if self.spec.base_url is None:
            return None, None
        import openai

        client = self.client().with_options(max_retries=0, timeout=_CHECK_TIMEOUT_S)
        where = public_url(str(client.base_url))
        try:
            listed = [model.id for model in client.models.list()]
        except openai.APIStatusError:
            return None, None  # there, but lists nothing
        except openai.OpenAIError as exc:
            return sdk_problem(exc, where, retries=0), None
        if not listed or self.spec.model in listed:
            return None, None
        offered = ", ".join(listed[:10]) + (", ..." if len(listed) > 10 else "")
        return None, f"{where} lists no model {self.spec.model!r}; it offers {offered}"

    def generate(self, request: Request) -> Reply:
        import openai

        client = self.client()
        params: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [
                {"role": "system", "content": request.prompt.system},
                {"role": "user", "content": request.prompt.user},
            ],
            # Streamed, so the time to the first token and the generation after it are known.
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # OpenAI's own API has renamed the limit; compatible servers know the old name.
        compatible = self.spec.base_url or os.environ.get("OPENAI_BASE_URL")
        params["max_tokens" if compatible else "max_completion_tokens"] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.params:
            params["extra_body"] = request.params
        clock = Stopwatch()
        parts: list[str] = []
        finish: str | None = None
        usage = Usage()
        try:
            with client.chat.completions.create(**params) as stream:
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices[:1]:
                        if choice.delta is not None and choice.delta.content:
                            clock.token()
                            parts.append(choice.delta.content)
                        finish = choice.finish_reason or finish
        except openai.OpenAIError as exc:
            raise sdk_error(exc, self.spec.label, str(client.base_url)) from None
        return clock.reply("".join(parts), usage, truncated=finish == "length")
