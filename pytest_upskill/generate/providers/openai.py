"""`openai:MODEL` and `openai:MODEL@BASE_URL`: Chat Completions through the official SDK, for
OpenAI and for any OpenAI-compatible server (vLLM, llama.cpp, Ollama)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ...config import public_url
from ._sdk import SDKProvider, Stopwatch, arguments_object, sdk_error, sdk_problem
from .protocol import MAX_RETRIES, Reply, Request, ToolCall, Usage

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionChunk

__all__ = ["OpenAIProvider", "openai_messages", "openai_tools"]

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
            "messages": openai_messages(request),
            # Streamed, so the time to the first token and the generation after it are known.
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            params["tools"] = openai_tools(request)
        # OpenAI's own API has renamed the limit; compatible servers know the old name.
        compatible = self.spec.base_url or os.environ.get("OPENAI_BASE_URL")
        params["max_tokens" if compatible else "max_completion_tokens"] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.params:
            params["extra_body"] = request.params
        reading = _StreamedChoice(Stopwatch())
        try:
            with client.chat.completions.create(**params) as stream:
                for chunk in stream:
                    reading.add(chunk)
        except openai.OpenAIError as exc:
            raise sdk_error(exc, self.spec.label, str(client.base_url)) from None
        return reading.reply()


def openai_messages(request: Request) -> list[dict[str, Any]]:
    """The system prompt, the task's message and the conversation after it, as Chat
    Completions takes them."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": request.prompt.system},
        {"role": "user", "content": request.prompt.user},
    ]
    for message in request.history:
        if message.role == "assistant":
            said: dict[str, Any] = {"role": "assistant", "content": message.text}
            if message.tool_calls:
                said["content"] = message.text or None  # what OpenAI itself sends back
                said["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        # As written when they are an object; else `{}`, as for Anthropic, so
                        # servers that parse them (vLLM, llama.cpp) take the conversation.
                        "function": {"name": call.name, "arguments": _sent(call)},
                    }
                    for call in message.tool_calls
                ]
            messages.append(said)
            continue
        # No is_error field in this API: the content says so.
        messages.extend(
            {
                "role": "tool",
                "tool_call_id": result.call_id,
                "content": f"error: {result.content}" if result.is_error else result.content,
            }
            for result in message.tool_results
        )
        if message.text or not message.tool_results:
            messages.append({"role": "user", "content": message.text})
    return messages


def _sent(call: ToolCall) -> str:
    return call.arguments if arguments_object(call.arguments) is not None else "{}"


def openai_tools(request: Request) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in request.tools
    ]


class _StreamedChoice:
    """The first choice put together from its chunks: text, tool calls (each by its index: id
    and name first, the arguments in pieces), finish reason and usage."""

    def __init__(self, clock: Stopwatch) -> None:
        self.clock = clock
        self.text: list[str] = []
        self.calls: dict[int, list[str]] = {}  # by index: id, name, arguments so far
        self.finish: str | None = None
        self.usage = Usage()

    def add(self, chunk: ChatCompletionChunk) -> None:
        if chunk.usage is not None:
            self.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        for choice in chunk.choices[:1]:
            delta = choice.delta
            if delta is not None and delta.content:
                self.clock.token()
                self.text.append(delta.content)
            for piece in (delta and delta.tool_calls) or ():
                self.clock.token()
                index = piece.index
                if index is None:  # a server that numbers none: a piece with an id begins a call
                    index = len(self.calls) if piece.id or not self.calls else max(self.calls)
                call = self.calls.setdefault(index, ["", "", ""])
                function = piece.function
                call[0] = call[0] or piece.id or ""
                call[1] = call[1] or (function and function.name) or ""
                call[2] += (function and function.arguments) or ""
            self.finish = choice.finish_reason or self.finish

    def reply(self) -> Reply:
        calls = tuple(ToolCall(*call) for _, call in sorted(self.calls.items()))
        # "tool_calls" is a reply that ends asking for tools: only "length" was cut.
        truncated = self.finish == "length"
        return self.clock.reply("".join(self.text), self.usage, truncated, calls)
