"""OpenAI's Responses API (`POST /v1/responses`) as the test model server sends it.

An answer (text, tool calls, usage, cut at the request's limit) becomes the response object
(`response_json`) or, when the request streams, the server-sent events that build it
(`response_events`), each sent as `event: NAME` and `data: JSON` lines; the stream ends with the
`response.completed` event (`response.incomplete` when cut), with no `[DONE]` line.

A tool call goes out as the kind of item its tool asks for in the request's `tools`: a
`function_call` whose `arguments` are JSON text for a `function` tool, a `custom_tool_call`
whose `input` is free text for a `custom` tool (Codex's `apply_patch`, say).

The Codex CLI (0.171) streams every request and reads these events; it needs no more than each
item's `response.output_item.done` and a `response.completed` whose response has an `id` and,
where it has `usage`, `input_tokens`, `output_tokens` and `total_tokens`. The rest is sent as
OpenAI sends it, for clients that read the deltas.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

__all__ = ["response_events", "response_json"]

TEXT_PIECE = 512  # characters of text per streamed delta
ARGUMENT_PIECE = 24  # characters of a tool call's arguments per streamed delta, at the least


def _pieces(text: str, size: int) -> list[str]:
    """`text` as streamed: pieces of `size` characters or more, at most 64 of them."""
    size = max(size, -(-len(text) // 64))
    return [text[offset : offset + size] for offset in range(0, len(text), size)]


def _tool_kinds(body: dict[str, Any]) -> dict[str, str]:
    """Each tool's name and type ("function", "custom", ...), those in namespaces included."""
    kinds: dict[str, str] = {}
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        for inner in tool.get("tools") or []:  # a namespace's own tools
            if isinstance(inner, dict) and "name" in inner:
                kinds.setdefault(str(inner["name"]), str(inner.get("type", "function")))
        if "name" in tool:
            kinds[str(tool["name"])] = str(tool.get("type", "function"))
    return kinds


def _usage(usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "input_tokens": usage[0],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage[1],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage[0] + usage[1],
    }


def _message(text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": "msg_loopback",
        "status": status,
        "role": "assistant",
        "content": [part],
    }


def _call(kind: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    if kind == "custom":
        return {
            "type": "custom_tool_call",
            "id": f"ctc_{call_id}",
            "status": status,
            "call_id": call_id,
            "name": name,
            "input": arguments,
        }
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def _output(
    body: dict[str, Any], text: str, calls: list[tuple[str, str, str]], cut: bool
) -> list[dict[str, Any]]:
    """The output items, complete: text first (if any, or if nothing else), then each call.
    When cut, the last item is the one the limit stopped: incomplete."""
    kinds = _tool_kinds(body)
    items = [_message(text, "completed")] if text or not calls else []
    for call_id, name, arguments in calls:
        items.append(_call(kinds.get(name, "function"), call_id, name, arguments, "completed"))
    if cut:
        items[-1]["status"] = "incomplete"
    return items


def _response(
    body: dict[str, Any],
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": "resp_loopback",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def response_json(
    body: dict[str, Any],
    text: str,
    calls: list[tuple[str, str, str]],
    usage: tuple[int, int],
    cut: bool,
) -> dict[str, Any]:
    """The response object for a request that does not stream: `calls` are (call_id, tool
    name, arguments text); `usage` (input, output) tokens; `cut`: stopped at the limit."""
    status = "incomplete" if cut else "completed"
    return _response(body, status, _output(body, text, calls, cut), _usage(usage))


def response_events(
    body: dict[str, Any],
    text: str,
    calls: list[tuple[str, str, str]],
    usage: tuple[int, int],
    cut: bool,
) -> Iterator[tuple[str, Any]]:
    """The server-sent events of a streamed response, (event name, data), in OpenAI's order:
    the response created, each output item added, its deltas, its item done, then the response
    completed (or incomplete, when cut) with the whole output and the usage."""
    output = _output(body, text, calls, cut)
    number = 0

    def event(kind: str, /, **data: Any) -> tuple[str, Any]:
        nonlocal number
        number += 1
        return kind, {"type": kind, "sequence_number": number - 1, **data}

    yield event("response.created", response=_response(body, "in_progress", [], None))
    yield event("response.in_progress", response=_response(body, "in_progress", [], None))
    for index, item in enumerate(output):
        started = {**item, "status": "in_progress"}
        place = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            part = item["content"][0]
            started["content"] = []
            yield event("response.output_item.added", output_index=index, item=started)
            empty = {**part, "text": ""}
            yield event("response.content_part.added", **place, content_index=0, part=empty)
            for piece in _pieces(part["text"], TEXT_PIECE):
                yield event(
                    "response.output_text.delta",
                    **place,
                    content_index=0,
                    delta=piece,
                    logprobs=[],
                )
            yield event(
                "response.output_text.done",
                **place,
                content_index=0,
                text=part["text"],
                logprobs=[],
            )
            yield event("response.content_part.done", **place, content_index=0, part=part)
        elif item["type"] == "custom_tool_call":
            added = {**started, "input": ""}
            yield event("response.output_item.added", output_index=index, item=added)
            for piece in _pieces(item["input"], ARGUMENT_PIECE):
                yield event("response.custom_tool_call_input.delta", **place, delta=piece)
            yield event("response.custom_tool_call_input.done", **place, input=item["input"])
        else:
            added = {**started, "arguments": ""}
            yield event("response.output_item.added", output_index=index, item=added)
            for piece in _pieces(item["arguments"], ARGUMENT_PIECE):
                yield event("response.function_call_arguments.delta", **place, delta=piece)
            yield event(
                "response.function_call_arguments.done",
                **place,
                name=item["name"],
                arguments=item["arguments"],
            )
        yield event("response.output_item.done", output_index=index, item=item)
    status = "incomplete" if cut else "completed"
    final = _response(body, status, output, _usage(usage))
    yield event(f"response.{status}", response=final)
