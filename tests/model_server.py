"""A model API on 127.0.0.1 for tests and benchmarks: the real SDK clients talk to it.

It speaks Anthropic's Messages API (`POST /v1/messages`) and OpenAI's Chat Completions
(`POST /v1/chat/completions`), each as plain JSON or as server-sent events when the request
streams, and lists its models (`GET /v1/models`) when given some. It records every request it
gets, and can be told to be slow, to fail first, or to serve one request at a time (as a
llama.cpp server with one slot does). Like a real server it stops at the request's max_tokens.
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

__all__ = ["ModelServer", "Received"]


@dataclass(frozen=True)
class Received:
    """One request the server got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def system(self) -> str:
        if self.path.endswith("/messages"):
            return str(self.body.get("system", ""))
        return str(next(m["content"] for m in self.body["messages"] if m["role"] == "system"))

    @property
    def user(self) -> str:
        return str(next(m["content"] for m in self.body["messages"] if m["role"] == "user"))


def tokens(text: str) -> int:
    """The server's token count: one per four characters, so tests can predict usage."""
    return max(1, len(text) // 4)


@dataclass
class ModelServer:
    """Answers every request with `answer(request)`, after `latency_s`, unless a fault is due.

    `faults`: HTTP statuses to answer first, one per request (`[429, 429]`: two rate limits,
    then success); `always`: a status to answer forever (500: a server that is down)."""

    answer: Callable[[Received], str] = lambda request: "no files here"
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
                try:
                    time.sleep(server.latency_s)
                    self._answer(request, status)
                finally:
                    server._count(-1)

        def _answer(self, request: Received, status: int) -> None:
            body = request.body
            anthropic = self.path.endswith("/v1/messages")
            if not anthropic and not self.path.endswith("/chat/completions"):
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            if status != 200:
                return self._json(status, _error(status, anthropic), {"retry-after-ms": "10"})
            text = server.answer(request)
            # A real server stops at the limit: here at 4 characters a token.
            limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
            cut = 0 < limit < tokens(text)
            if cut:
                text = text[: 4 * limit]
            prompt = request.system + request.user
            usage = (tokens(prompt), tokens(text))
            if not anthropic:
                if body.get("stream"):
                    return self._events(_chunks(body, text, usage, cut), named=False)
                return self._json(200, _chat_completion(body, text, usage, cut))
            if body.get("stream"):
                return self._events(_message_events(body, text, usage, cut))
            return self._json(200, _message(body, text, usage, cut))

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
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
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def _error(status: int, anthropic: bool) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": f"status {status}"}}
    return {"error": {"message": f"status {status}", "type": kind, "code": None, "param": None}}


def _message(body: dict[str, Any], text: str, usage: tuple[int, int], cut: bool) -> dict[str, Any]:
    return {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if cut else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def _message_events(
    body: dict[str, Any], text: str, usage: tuple[int, int], cut: bool
) -> Iterator[tuple[str, dict[str, Any]]]:
    start = {**_message(body, "", (usage[0], 0), cut), "content": [], "stop_reason": None}
    yield "message_start", {"type": "message_start", "message": start}
    yield (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
    )
    for offset in range(0, len(text), 512):
        yield (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text[offset : offset + 512]},
            },
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens" if cut else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage[1]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    return {
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "total_tokens": usage[0] + usage[1],
    }


def _chat_completion(
    body: dict[str, Any], text: str, usage: tuple[int, int], cut: bool
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length" if cut else "stop",
            }
        ],
        "usage": _usage(usage),
    }


def _chunks(
    body: dict[str, Any], text: str, usage: tuple[int, int], cut: bool
) -> Iterator[tuple[str, Any]]:
    """Chat completion chunks, as OpenAI streams them; usage last when the request asks."""
    base = {"id": "chatcmpl-loopback", "object": "chat.completion.chunk", "model": body["model"]}
    base["created"] = int(time.time())
    role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield "", {**base, "choices": [role]}
    for offset in range(0, len(text), 512):
        delta = {"index": 0, "delta": {"content": text[offset : offset + 512]}}
        yield "", {**base, "choices": [{**delta, "finish_reason": None}]}
    end = {"index": 0, "delta": {}, "finish_reason": "length" if cut else "stop"}
    yield "", {**base, "choices": [end]}
    if (body.get("stream_options") or {}).get("include_usage"):
        yield "", {**base, "choices": [], "usage": _usage(usage)}
    yield "", "[DONE]"
