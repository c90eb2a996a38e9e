"""The only way out of an agent CLI's sandbox: a reverse proxy to its one model endpoint.

The sandbox has a network namespace of its own (loopback only); the bridge inside it carries
each connection to this proxy's Unix socket, bound into the sandbox. The proxy forwards only the
client's own routes of the configured endpoint (`POST /v1/messages`, `POST /responses`), by
plain paths; anything else (another route or method, a path with `..` or `%`, an absolute URL,
CONNECT) is refused with 403. The CLI holds a placeholder key: the proxy puts the real one on
each request, so no credential ever enters the sandbox.

Every exchange is kept for the cassette (the request's digest, the response whole); replaying,
the proxy answers each request with the recorded response of the same method, path and model,
in order, and asks nobody. Token usage is read here, from the responses, never from what the
CLI reports; once `max_tokens` is spent, the next request is refused (requests then go one at a
time, so parallel ones cannot overrun it). Connections, request sizes and chunk counts are
capped, so nothing in the sandbox can run this process out of memory or threads.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socketserver
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..generate.providers import Usage
from ..paths import bind_unix
from .exchanges import RECORD_CAP, Exchange, plain_content_type, usage_of

__all__ = ["Proxy"]

_BODY_CAP = 32 << 20  # a request larger than this is refused
_CHUNKS_CAP = 100_000  # chunks of one chunked request body
_TAIL = 1 << 16  # the end of a response, kept for its usage when the recording is cut
_CONNECTIONS = 16  # at once; more are closed unanswered
_IDLE_S = 120.0  # a connection that sends nothing for this long is closed
_PIECE = 1 << 16
_HEX = re.compile(rb"[0-9A-Fa-f]{1,8}(;[^\r\n]*)?\r?\n")
_PLAIN_PATH = re.compile(r"(/[\w.-]+)*/?", re.ASCII)  # no '%', '\', '//', empty or dot parts
_QUERY = re.compile(r"[\w.=&-]*", re.ASCII)
_KEYS = frozenset({"x-api-key", "authorization", "api-key"})  # the placeholder's headers
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "accept-encoding",
    }
)


class Proxy:
    """Serves one agent run, on the Unix socket `path`: the `routes` (method, path under the
    endpoint) of `upstream` (a base URL), forwarded with `credentials` (headers) when recording,
    else answered from `replay`."""

    def __init__(
        self,
        path: Path,
        upstream: str,
        credentials: Mapping[str, str],
        routes: Sequence[tuple[str, str]],
        replay: list[Exchange] | None = None,
        max_tokens: int | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.path = path
        self.upstream = urlsplit(upstream)
        self.prefix = self.upstream.path.rstrip("/")
        self.credentials = dict(credentials)
        self.routes = {(method, self.prefix + route) for method, route in routes}
        self.replay = replay
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.exchanges: list[Exchange] = []
        self.refused: list[str] = []  # requests it would not forward, in words
        self.unmatched: list[str] = []  # replaying: requests the recording had no answer for
        self.limit = ""  # the token limit, in words, once a request was refused for it
        # Held from a request's check to its usage counted, when tokens are limited.
        self.budget = threading.Lock() if max_tokens is not None else nullcontext()
        self._lock = threading.Lock()
        self._served: dict[tuple[str, str, str], int] = {}
        self._server = _UnixServer(str(path), _handler(self), self)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def usage(self) -> Usage:
        with self._lock:
            return Usage(
                sum(e.input_tokens for e in self.exchanges),
                sum(e.output_tokens for e in self.exchanges),
            )

    def inside_url(self, port: int) -> str:
        """The base URL the CLI is given: the bridge's port, the endpoint's path."""
        return f"http://127.0.0.1:{port}{self.prefix}"

    def refuse(self, why: str) -> str:
        with self._lock:
            if len(self.refused) < 100:
                self.refused.append(why)
        return why

    def refusal(self, method: str, target: str) -> str:
        """Why a request may not go out ('' when it may)."""
        if method == "CONNECT" or not target.startswith("/"):
            return f"{method} {target[:200]}: only the model endpoint can be reached"
        parts = urlsplit(target)
        plain = _PLAIN_PATH.fullmatch(parts.path) and _QUERY.fullmatch(parts.query)
        if not plain or any(part in (".", "..") for part in parts.path.split("/")):
            return f"{method} {target[:200]}: not a plain path"
        if (method, parts.path) not in self.routes:
            allowed = ", ".join(f"{m} {p}" for m, p in sorted(self.routes))
            return f"{method} {parts.path[:200]}: not a route of the model endpoint ({allowed})"
        spent = self.usage.input_tokens + self.usage.output_tokens
        if self.max_tokens is not None and spent >= self.max_tokens:
            self.limit = f"token limit {self.max_tokens} reached ({spent} spent)"
            return self.limit
        return ""

    def recorded(self, method: str, target: str, model: str) -> Exchange | None:
        """Replaying: the next recorded answer to this method, path and model."""
        assert self.replay is not None
        key = (method, urlsplit(target).path, model)
        with self._lock:
            seen = self._served.get(key, 0)
            self._served[key] = seen + 1
        matching = [e for e in self.replay if (e.method, urlsplit(e.path).path, e.model) == key]
        if seen < len(matching):
            return matching[seen]
        with self._lock:
            self.unmatched.append(f"{method} {key[1]} (model {model or 'none'}) #{seen + 1}")
        return None

    def keep(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def forward(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Iterator[tuple[int, dict[str, str], bytes]]:
        """Send the request on (the standard library's client: one endpoint, no pool needed);
        yield the status and headers with the first piece of the body, then the rest."""
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {k: v for k, v in headers.items() if k.lower() not in _HOP | _KEYS}
        sent.update(self.credentials)
        sent["accept-encoding"] = "identity"  # the bytes recorded are the bytes the CLI reads
        host, port = self.upstream.hostname or "", self.upstream.port
        if self.upstream.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout_s
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            kept = {
                k.lower(): v
                for k, v in response.getheaders()
                if k.lower() not in _HOP and "\r" not in v and "\n" not in v
            }
            yield response.status, kept, response.read1(_PIECE)
            while piece := response.read1(_PIECE):
                yield 0, kept, piece
        finally:
            connection.close()


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    def __init__(self, path: str, handler: type[BaseHTTPRequestHandler], proxy: Proxy) -> None:
        super().__init__(path, handler)
        self.proxy = proxy
        self.slots = threading.BoundedSemaphore(_CONNECTIONS)

    def server_bind(self) -> None:
        bind_unix(self.socket, Path(str(self.server_address)))

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):  # a flood: closed, unanswered
            self.proxy.refuse(f"more than {_CONNECTIONS} connections at once")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A CLI that hung up mid-answer is no error of the session's."""


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = _IDLE_S

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_CONNECT(self) -> None:
            self._refuse(proxy.refusal("CONNECT", self.path))

        def do_HEAD(self) -> None:
            # Claude Code's check that its endpoint answers, without a key: answered here.
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            # The body is read first, even of a request that is refused: a client still
            # sending it would otherwise get a broken pipe instead of the refusal.
            body = self._body()
            refused = proxy.refusal(self.command, self.path)
            if refused:
                return self._refuse(refused)
            if any("\r" in value or "\n" in value for value in self.headers.values()):
                # A folded header line: an upstream that unfolds it would read a header more.
                return self._refuse("a header folded over lines", 400)
            if body is None:
                return self._refuse("the request body is too large, cut short or malformed", 413)
            with proxy.budget:  # one at a time when tokens are limited: none can overrun it
                refused = proxy.refusal(self.command, self.path)
                if refused:
                    return self._refuse(refused)
                model = _model_of(body)
                if proxy.replay is None:
                    return self._forward(body, model)
                exchange = proxy.recorded(self.command, self.path, model)
                if exchange is None:
                    return self._error(
                        400, "pytest-upskill: the recording has no answer for this request"
                    )
                self._send(exchange.status, exchange.content_type, [exchange.body.encode()])
                return proxy.keep(exchange)

        def _forward(self, body: bytes, model: str) -> None:
            pieces: list[bytes] = []
            kept, tail = 0, b""
            status, content_type = 0, ""
            try:
                answer = proxy.forward(self.command, self.path, dict(self.headers.items()), body)
                status, headers, first = next(answer)
                content_type = plain_content_type(headers.get("content-type", ""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for piece in _chain(first, answer):
                    if kept < RECORD_CAP:
                        pieces.append(piece[: RECORD_CAP - kept])
                        kept += len(pieces[-1])
                    tail = (tail + piece)[-_TAIL:]
                    self._chunk(piece)
                self.wfile.write(b"0\r\n\r\n")
            except Exception as exc:  # the endpoint failed: the CLI sees a 502, as from a gateway
                if status == 0:
                    self._error(502, f"pytest-upskill proxy: {type(exc).__name__}: {exc}")
                    return
            text = b"".join(pieces).decode("utf-8", "replace")
            tokens = [
                max(a, b)
                for a, b in zip(
                    usage_of(text), usage_of(tail.decode("utf-8", "replace")), strict=True
                )
            ]
            proxy.keep(
                Exchange(
                    method=self.command,
                    path=self.path[:2000],
                    model=model,
                    request_sha256=hashlib.sha256(body).hexdigest(),
                    status=min(max(status, 200), 599),
                    content_type=content_type,
                    body=text[:RECORD_CAP],
                    input_tokens=tokens[0],
                    output_tokens=tokens[1],
                )
            )

        def _body(self) -> bytes | None:
            """The request's body; None when it is larger than allowed, ends before its
            length, or is malformed."""
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                data = bytearray()
                for _ in range(_CHUNKS_CAP):
                    line = self.rfile.readline(100)
                    if not _HEX.fullmatch(line):
                        return None
                    size = int(line.split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(data)
                    if len(data) + size > _BODY_CAP:
                        return None
                    piece = self.rfile.read(size)
                    if len(piece) < size:
                        return None
                    data += piece
                    self.rfile.readline(10)
                return None
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                return None
            if not 0 <= length <= _BODY_CAP:
                return None
            read = self.rfile.read(length)
            return read if len(read) == length else None

        def _send(self, status: int, content_type: str, pieces: list[bytes]) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("content-type", content_type)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for piece in pieces:
                self._chunk(piece)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _chunk(self, piece: bytes) -> None:
            if piece:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()

        def _refuse(self, why: str, status: int = 403) -> None:
            proxy.refuse(why)
            self._error(status, f"pytest-upskill proxy refused: {why}")
            self.close_connection = True

        def _error(self, status: int, message: str) -> None:
            # Both APIs' error shapes at once: each CLI finds the message where it looks.
            error = {"type": "invalid_request_error", "message": message}
            payload = {"type": "error", "error": error}
            self._send(status, "application/json", [json.dumps(payload).encode()])

    return Handler


def _chain(first: bytes, rest: Iterator[tuple[int, dict[str, str], bytes]]) -> Iterator[bytes]:
    yield first
    for _, _, piece in rest:
        yield piece


def _model_of(body: bytes) -> str:
    try:
        document = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return ""
    model = document.get("model") if isinstance(document, dict) else None
    return model[:200] if isinstance(model, str) else ""
