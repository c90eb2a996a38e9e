"""`anthropic:MODEL`: Anthropic's Messages API through the official SDK, streamed.

The API (version 2026-10-21, which SDK 2.x sends) takes no sampling parameters: the session
sends these models no temperature and records none.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._sdk import SDKProvider, Stopwatch, arguments_object, sdk_error
from .protocol import MAX_RETRIES, Message, Reply, Request, ToolCall, Usage

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import (
        MessageParam,
        RawMessageStreamEvent,
        TextBlockParam,
        ToolParam,
        ToolResultBlockParam,
        ToolUseBlockParam,
    )

__all__ = ["AnthropicProvider", "anthropic_messages", "anthropic_tools"]


class AnthropicProvider(SDKProvider["anthropic.Anthropic"]):
    """Key and base URL come from the SDK's variables: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL."""

    key_variables = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")

    def make_client(self) -> anthropic.Anthropic:
        import anthropic

        return anthropic.Anthropic(max_retries=MAX_RETRIES, timeout=self.timeout_s)

    def generate(self, request: Request) -> Reply:
        import anthropic

        client = self.client()
        reading = _StreamedMessage(Stopwatch())
        try:
            # Streamed: the SDK refuses long non-streaming requests, and kernel replies are long.
            # Raw events, not `messages.stream()`: its helper parses tool input as it arrives and
            # raises on malformed JSON, where a malformed call is the loop's to answer.
            with client.messages.create(
                model=self.spec.model,
                max_tokens=request.max_tokens,
                system=request.prompt.system,
                messages=anthropic_messages(request),
                tools=anthropic_tools(request) or anthropic.omit,
                stream=True,
                extra_body=request.params or None,
            ) as stream:
                for event in stream:
                    reading.add(event)
        except anthropic.AnthropicError as exc:
            raise sdk_error(exc, self.spec.label, str(client.base_url)) from None
        return reading.reply()


def anthropic_messages(request: Request) -> list[MessageParam]:
    """The task's message, then the conversation after it, as the Messages API takes them."""
    messages: list[MessageParam] = [{"role": "user", "content": request.prompt.user}]
    for message in request.history:
        content = _content(message)
        # The API refuses an empty turn; dropped, its neighbours merge into one turn (which the
        # API does with consecutive turns of one role), and the conversation stays valid.
        if content and message.role == "assistant":
            messages.append({"role": "assistant", "content": content})
        elif content:
            messages.append({"role": "user", "content": content})
    return messages


def _content(
    message: Message,
) -> list[TextBlockParam | ToolUseBlockParam | ToolResultBlockParam]:
    blocks: list[TextBlockParam | ToolUseBlockParam | ToolResultBlockParam] = []
    # Results first: the API wants a turn's tool_result blocks before its text.
    for result in message.tool_results:
        blocks.append(
            {
                "type": "tool_result",
                "tool_use_id": result.call_id,
                "content": result.content,
                "is_error": result.is_error,
            }
        )
    if message.text:  # an empty text block is refused
        blocks.append({"type": "text", "text": message.text})
    for call in message.tool_calls:
        # `input` must be an object: a malformed call goes back as `{}`, and its tool result
        # (an error) tells the model what was wrong with what it wrote.
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": arguments_object(call.arguments) or {},
            }
        )
    return blocks


def anthropic_tools(request: Request) -> list[ToolParam]:
    return [
        {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
        for tool in request.tools
    ]


class _StreamedMessage:
    """A message put together from its raw stream events: text, tool calls with their
    arguments exactly as streamed, stop reason and usage."""

    def __init__(self, clock: Stopwatch) -> None:
        self.clock = clock
        self.text: list[str] = []
        self.calls: dict[int, tuple[str, str]] = {}  # by block index: id, name
        self.arguments: dict[int, list[str]] = {}  # by block index: the JSON's pieces
        self.given: dict[int, Any] = {}  # input given whole in the block's start (no deltas)
        self.stop_reason: str | None = None
        self.usage = Usage()

    def add(self, event: RawMessageStreamEvent) -> None:
        if event.type == "message_start":
            usage = event.message.usage
            self.usage = Usage(usage.input_tokens, usage.output_tokens)
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.clock.token()
                self.calls[event.index] = (block.id, block.name)
                self.given[event.index] = block.input
            elif block.type == "text" and block.text:
                self.clock.token()
                self.text.append(block.text)
        elif event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                self.clock.token()
                self.text.append(delta.text)
            elif delta.type == "input_json_delta" and event.index in self.calls:
                self.clock.token()
                self.arguments.setdefault(event.index, []).append(delta.partial_json)
        elif event.type == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            # Cumulative counts: they replace the start's.
            input_tokens = event.usage.input_tokens
            self.usage = Usage(
                self.usage.input_tokens if input_tokens is None else input_tokens,
                event.usage.output_tokens,
            )

    def tool_calls(self) -> tuple[ToolCall, ...]:
        calls = []
        for index, (call_id, name) in sorted(self.calls.items()):
            # Streamed input starts as `{}` and arrives in pieces; a server that sends it whole
            # in the block's start (or a tool without arguments) has none.
            arguments = "".join(self.arguments.get(index, ()))
            arguments = arguments or json.dumps(self.given[index] or {})
            calls.append(ToolCall(call_id, name, arguments))
        return tuple(calls)

    def reply(self) -> Reply:
        truncated = self.stop_reason == "max_tokens"
        return self.clock.reply("".join(self.text), self.usage, truncated, self.tool_calls())
