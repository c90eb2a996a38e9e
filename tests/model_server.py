"""A model API on 127.0.0.1 for tests and benchmarks: the real SDK clients talk to it.

It speaks Anthropic's Messages API (`POST /v1/messages`), OpenAI's Chat Completions
(`POST /v1/chat/completions`) and Responses API (`POST /v1/responses`, as Codex asks), each as
plain JSON or as server-sent events when the request streams, and lists its models
(`GET /v1/models`) when given some. It records every request it gets, and can be told to be
slow, to fail first, or to serve one request at a time (as a llama.cpp server with one slot
does). Like a real server it stops at the request's max_tokens.

An answer is text, or an `Answer`: text and tool calls, sent in each API's own wire format (the
arguments streamed in pieces), so tests can drive a conversation with tools.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from responses_api import response_events, response_json

__all__ = ["ARGUMENT_PIECE", "Answer", "ModelServer", "Received", "loopback_model"]

ARGUMENT_PIECE = 24  # characters of a tool call's arguments per streamed event, at the least


def _pieces(arguments: str) -> list[str]:
    """A tool call's arguments as streamed: small pieces, at most 64 of them (a 10 MB call
    would otherwise be half a million events)."""
    size = max(ARGUMENT_PIECE, -(-len(arguments) // 64))
    return [arguments[offset : offset + size] for offset in range(0, len(arguments), size)] or [""]


@dataclass(frozen=True)
class Answer:
    """A reply with tool calls: each (name, arguments), a dict sent as its JSON, a str as it
    is (malformed JSON, say)."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Output:
    """What the server sends back: text, tool calls (id, name, arguments) and usage, cut at
    the request's limit."""

    text: str
    calls: list[tuple[str, str, str]]
    usage: tuple[int, int]
    cut: bool


@dataclass(frozen=True)
class Received:
    """One request the server got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def route(self) -> str:
        """The path without its query (Claude Code asks `/v1/messages?beta=true`)."""
        return self.path.partition("?")[0]

    @property
    def system(self) -> str:
        if self.route.endswith("/responses"):  # Codex: the instructions are developer input
            return str(self.body.get("instructions") or "") + "".join(
                _texts(self.body, "developer")
            )
        if self.route.endswith("/messages"):
            system = self.body.get("system", "")
            if isinstance(system, list):  # blocks, as Claude Code sends it
                return "".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
            return str(system)
        messages = self.body["messages"]
        return str(next((m["content"] for m in messages if m["role"] == "system"), ""))

    @property
    def user(self) -> str:
        if self.route.endswith("/responses"):
            return "".join(_texts(self.body, "user")[:1])
        return str(next(m["content"] for m in self.body["messages"] if m["role"] == "user"))

    @property
    def history(self) -> list[dict[str, Any]]:
        """The messages after the task's first user message, as the SDK sent them."""
        messages: list[dict[str, Any]] = self.body["messages"]
        first = next(i for i, m in enumerate(messages) if m["role"] == "user")
        return messages[first + 1 :]

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools") or [])


def _texts(body: dict[str, Any], role: str) -> list[str]:
    """The text of each Responses API input message of `role`."""
    texts = []
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("role") == role:
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.append("".join(str(part.get("text", "")) for part in content))
    return texts


def tokens(text: str) -> int:
    """The server's token count: one per four characters, so tests can predict usage."""
    return max(1, len(text) // 4)


@dataclass
class ModelServer:
    """Answers every request with `answer(request)`, after `latency_s`, unless a fault is due.

    `faults`: HTTP statuses to answer first, one per request (`[429, 429]`: two rate limits,
    then success); `always`: a status to answer forever (500: a server that is down)."""

    answer: Callable[[Received], str | Answer] = lambda request: "no files here"
    latency_s: float = 0.0
    faults: list[int] = field(default_factory=list)
    always: int | None = None
    received: list[Received] = field(default_factory=list)
    most_in_flight: int = 0  # the most requests it was answering at once
    serial: bool = False  # one request at a time: the others wait their turn
    chunk_delay_s: float = 0.0  # between the chunks of a streamed reply: generation takes time
    models: list[str] | None = None  # what GET /v1/models lists; None: no such route

    def __post_init__(self) -> None:
        self._faults = deque(self.faults)
        self._in_flight = 0
        self._lock = threading.Lock()
        self._slot = threading.Lock()  # held while answering, when serial
        self._calls = 0  # tool calls answered: each gets an id of its own
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _status(self, request: Received) -> int:
        with self._lock:
            self.received.append(request)
            if self.always is not None:
                return self.always
            return self._faults.popleft() if self._faults else 200

    def _output(self, request: Received, anthropic: bool) -> _Output:
        """The answer to `request`, cut where a real server stops: at max_tokens (4 characters a
        token), counting the text, then each tool call's arguments."""
        answer = self.answer(request)
        if isinstance(answer, str):
            answer = Answer(answer)
        calls = []
        for name, arguments in answer.tool_calls:
            with self._lock:
                self._calls += 1
                number = self._calls
            call_id = f"toolu_01{number:022d}" if anthropic else f"call_{number:024d}"
            written = arguments if isinstance(arguments, str) else json.dumps(arguments)
            calls.append((call_id, name, written))
        text = answer.text
        body = request.body
        limit = int(
            body.get("max_tokens")
            or body.get("max_completion_tokens")
            or body.get("max_output_tokens")
            or 0
        )
        cut = 0 < limit < tokens(text + "".join(c[2] for c in calls))
        if cut:
            left = 4 * limit
            text = text[:left]
            left -= len(text)
            kept = []
            for call_id, name, written in calls:
                if left <= 0:
                    break  # the calls after the cut never began
                kept.append((call_id, name, written[:left]))  # cut short: what was written
                left -= len(written)
            calls = kept
        prompt = request.system + request.user
        out = tokens(text + "".join(c[2] for c in calls))
        return _Output(text, calls, (tokens(prompt), out), cut)

    def _count(self, change: int) -> None:
        with self._lock:
            self._in_flight += change
            self.most_in_flight = max(self.most_in_flight, self._in_flight)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout, Ctrl-C) is no server error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' HTTP clients expect
        _counted = False  # this request is among those in flight

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/v1/models") and server.models is not None:
                listed = [
                    {"id": m, "object": "model", "owned_by": "loopback"} for m in server.models
                ]
                return self._json(200, {"object": "list", "data": listed})
            return self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            request = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            status = server._status(request)
            with server._slot if server.serial else contextlib.nullcontext():
                server._count(+1)
                self._counted = True
                try:
                    time.sleep(server.latency_s)
                    self._answer(request, status)
                finally:
                    self._done()

        def _done(self) -> None:
            """The request is answered: counted out before its last bytes go, so a client
            that reads them and sends its next request is not seen overlapping itself."""
            if self._counted:
                self._counted = False
                server._count(-1)

        def _answer(self, request: Received, status: int) -> None:
            body = request.body
            anthropic = request.route.endswith("/v1/messages")
            responses = request.route.endswith("/v1/responses")
            if not anthropic and not responses and not request.route.endswith("/chat/completions"):
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            if status != 200:
                return self._json(status, _error(status, anthropic), {"retry-after-ms": "10"})
            out = server._output(request, anthropic)
            if responses:  # OpenAI's Responses API, as Codex speaks it
                answer = (body, out.text, out.calls, out.usage, out.cut)
                if body.get("stream"):
                    return self._events(response_events(*answer))
                return self._json(200, response_json(*answer))
            if not anthropic:
                if body.get("stream"):
                    return self._events(_chunks(body, out), named=False)
                return self._json(200, _chat_completion(body, out))
            if body.get("stream"):
                return self._events(_message_events(body, out))
            return self._json(200, _message(body, out))

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self._done()
            self.wfile.write(data)

        def _events(self, events: Iterator[tuple[str, Any]], named: bool = True) -> None:
            """Server-sent events: Anthropic names each; OpenAI sends data lines, then [DONE]."""
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for name, data in events:
                payload = data if isinstance(data, str) else json.dumps(data)
                event = f"event: {name}\n" if named else ""
                chunk = f"{event}data: {payload}\n\n".encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                time.sleep(server.chunk_delay_s)
            self._done()
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def _error(status: int, anthropic: bool) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": f"status {status}"}}
    return {"error": {"message": f"status {status}", "type": kind, "code": None, "param": None}}


def _stop_reason(out: _Output) -> str:
    return "max_tokens" if out.cut else "tool_use" if out.calls else "end_turn"


def _message(body: dict[str, Any], out: _Output) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": out.text}] if out.text else []
    for call_id, name, arguments in out.calls:
        try:
            given = json.loads(arguments)
        except ValueError:
            given = {}  # the whole message holds parsed input: malformed JSON cannot be sent
        content.append({"type": "tool_use", "id": call_id, "name": name, "input": given})
    return {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content or [{"type": "text", "text": ""}],
        "stop_reason": _stop_reason(out),
        "stop_sequence": None,
        "usage": {"input_tokens": out.usage[0], "output_tokens": out.usage[1]},
    }


def _block(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def _delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def _message_events(body: dict[str, Any], out: _Output) -> Iterator[tuple[str, dict[str, Any]]]:
    start = {**_message(body, out), "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": out.usage[0], "output_tokens": 0}
    yield "message_start", {"type": "message_start", "message": start}
    first = 0  # the first tool call's block
    if out.text or not out.calls:  # as the API: no empty text block before tool calls
        yield _block(0, {"type": "text", "text": ""})
        for offset in range(0, len(out.text), 512):
            yield _delta(0, {"type": "text_delta", "text": out.text[offset : offset + 512]})
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
        first = 1
    for index, (call_id, name, arguments) in enumerate(out.calls, start=first):
        yield _block(index, {"type": "tool_use", "id": call_id, "name": name, "input": {}})
        yield _delta(index, {"type": "input_json_delta", "partial_json": ""})  # as the API
        for piece in _pieces(arguments):
            yield _delta(index, {"type": "input_json_delta", "partial_json": piece})
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(out), "stop_sequence": None},
            "usage": {"output_tokens": out.usage[1]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    return {
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "total_tokens": usage[0] + usage[1],
    }


def _finish_reason(out: _Output) -> str:
    return "length" if out.cut else "tool_calls" if out.calls else "stop"


def _chat_completion(body: dict[str, Any], out: _Output) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": out.text}
    if out.calls:
        message["content"] = out.text or None
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in out.calls
        ]
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(out)}],
        "usage": _usage(out.usage),
    }


def _chunks(body: dict[str, Any], out: _Output) -> Iterator[tuple[str, Any]]:
    """Chat completion chunks, as OpenAI streams them; usage last when the request asks."""
    base = {"id": "chatcmpl-loopback", "object": "chat.completion.chunk", "model": body["model"]}
    base["created"] = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[str, Any]:
        return "", {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    for offset in range(0, len(out.text), 512):
        yield chunk({"content": out.text[offset : offset + 512]})
    for index, (call_id, name, arguments) in enumerate(out.calls):
        # Id and name first, then the arguments in pieces, as OpenAI streams a call.
        function = {"name": name, "arguments": ""}
        yield chunk(
            {
                "tool_calls": [
                    {"index": index, "id": call_id, "type": "function", "function": function}
                ]
            }
        )
        for text in _pieces(arguments):
            piece = {"arguments": text}
            yield chunk({"tool_calls": [{"index": index, "function": piece}]})
    yield chunk({}, _finish_reason(out))
    if (body.get("stream_options") or {}).get("include_usage"):
        yield "", {**base, "choices": [], "usage": _usage(out.usage)}
    yield "", "[DONE]"


def loopback_model(provider: str, server: ModelServer, environ: Any) -> str:
    """The model spec that reaches `server` through `provider`'s SDK: Anthropic's through its
    variables (set on `environ`, a pytest MonkeyPatch), OpenAI's through @BASE_URL."""
    if provider == "anthropic":
        environ.setenv("ANTHROPIC_API_KEY", "sk-ant-loopback-secret")
        environ.setenv("ANTHROPIC_BASE_URL", server.url)
        return "anthropic:claude-x"
    return f"openai:m@{server.url}/v1"
