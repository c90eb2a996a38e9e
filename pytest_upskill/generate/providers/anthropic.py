"""`anthropic:MODEL`: Anthropic's Messages API through the official SDK, streamed.

The API (version 2026-10-21, which SDK 2.x sends) takes no sampling parameters: the session
sends these models no temperature and records none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sdk import SDKProvider, Stopwatch, sdk_error
from .protocol import MAX_RETRIES, Reply, Request, Usage

if TYPE_CHECKING:
    import anthropic

__all__ = ["AnthropicProvider"]


class AnthropicProvider(SDKProvider["anthropic.Anthropic"]):
    """Key and base URL come from the SDK's variables: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL."""

    key_variables = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")

    def make_client(self) -> anthropic.Anthropic:
        import anthropic

        return anthropic.Anthropic(max_retries=MAX_RETRIES, timeout=self.timeout_s)

    def generate(self, request: Request) -> Reply:
        import anthropic

        client = self.client()
        clock = Stopwatch()
        try:
            # Streamed: the SDK refuses long non-streaming requests, and kernel replies are long.
            with client.messages.stream(
                model=self.spec.model,
                max_tokens=request.max_tokens,
                system=request.prompt.system,
                messages=[{"role": "user", "content": request.prompt.user}],
                extra_body=request.params or None,
            ) as stream:
                for _ in stream.text_stream:
                    clock.token()
                message = stream.get_final_message()
        except anthropic.AnthropicError as exc:
            raise sdk_error(exc, self.spec.label, str(client.base_url)) from None
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = Usage(message.usage.input_tokens, message.usage.output_tokens)
        return clock.reply(text, usage, truncated=message.stop_reason == "max_tokens")
