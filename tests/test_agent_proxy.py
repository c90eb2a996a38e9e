"""The agent CLIs' boundary, piece by piece: the model proxy (a real one on a Unix socket, in
front of the loopback server) and the workspace's harvest of what a sandboxed CLI wrote."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from model_server import ModelServer
from pydantic import ValidationError

from pytest_upskill.clients.exchanges import Exchange, usage_of
from pytest_upskill.clients.proxy import Proxy
from pytest_upskill.clients.workspace import TASK_FILE, harvest, install_skill
from pytest_upskill.project.extract import MAX_FILE_BYTES, MAX_FILES
from pytest_upskill.skill import load_skill

BODY = {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
ROUTES = (("POST", "/v1/messages"),)
CODEX = (("POST", "/responses"),)


class UnixConnection(http.client.HTTPConnection):
    """What the bridge inside the sandbox does: HTTP over the proxy's Unix socket."""

    def __init__(self, path: Path) -> None:
        super().__init__("127.0.0.1", 8080, timeout=30)
        self.socket_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.socket_path)


def ask(
    path: Path, method: str, target: str, body: object = BODY, key: str = "placeholder"
) -> tuple[int, str]:
    connection = UnixConnection(path)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json", "x-api-key": key}
    connection.request(method, target, body=data, headers=headers)
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, text


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    # Unix socket paths are short: pytest's temporary folders can be longer than 107 bytes.
    return Path(os.path.relpath(tmp_path / "p.sock"))


def test_the_proxy_forwards_with_the_real_key_and_records_usage(sock: Path) -> None:
    with (
        ModelServer(answer=lambda request: "four words of reply") as server,
        Proxy(sock, server.url, {"x-api-key": "real"}, ROUTES) as proxy,
    ):
        status, text = ask(sock, "POST", "/v1/messages?beta=true")
    assert status == 200
    assert "four words of reply" in text
    (received,) = server.received
    assert received.headers["x-api-key"] == "real"  # the placeholder never reaches the API
    assert received.path == "/v1/messages?beta=true"
    (exchange,) = proxy.exchanges
    assert (exchange.status, exchange.model, exchange.path) == (200, "claude-x", received.path)
    assert (exchange.input_tokens, exchange.output_tokens) == (1, 4)  # the server's counts
    assert proxy.usage.output_tokens == 4


def test_the_proxy_listens_in_a_folder_deeper_than_a_socket_path_can_name(tmp_path: Path) -> None:
    # A deep TMPDIR (a CI runner's, a cluster's scratch) puts the session's sockets there.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with (
        ModelServer(answer=lambda request: "an answer") as server,
        Proxy(deep / "proxy.sock", server.url, {}, ROUTES),
    ):
        assert (deep / "proxy.sock").is_socket()  # where the sandbox maps it from
        folder = os.open(deep, os.O_PATH)  # the bridge's path is short: /run/upskill/...
        try:
            status, text = ask(Path(f"/proc/self/fd/{folder}/proxy.sock"), "POST", "/v1/messages")
        finally:
            os.close(folder)
    assert (status, "an answer" in text) == (200, True)


@pytest.mark.parametrize(
    ("method", "target", "why"),
    [
        ("GET", "http://127.0.0.1:9/v1/models", "only the model endpoint can be reached"),
        ("CONNECT", "example.com:443", "only the model endpoint can be reached"),
        ("POST", "/elsewhere/v1/messages", "not a route of the model endpoint"),
        ("POST", "/v1x/responses", "not a route of the model endpoint"),
        ("GET", "/v1/models", "not a route of the model endpoint (POST /v1/responses)"),
        ("PUT", "/v1/responses", "not a route of the model endpoint"),
        ("POST", "/v1/../v1/responses", "not a plain path"),
        ("POST", "/v1/%2e%2e/admin", "not a plain path"),
        ("POST", "/v1//responses", "not a plain path"),
        ("POST", "/v1/responses?x=%0d", "not a plain path"),
    ],
)
def test_the_proxy_refuses_anything_but_its_endpoint(
    sock: Path, method: str, target: str, why: str
) -> None:
    with (
        ModelServer() as server,
        Proxy(sock, f"{server.url}/v1", {"authorization": "Bearer real"}, CODEX) as proxy,
    ):
        status, text = ask(sock, method, target, None if method != "POST" else BODY)
    assert status == 403
    assert why in text
    assert server.received == []
    assert proxy.exchanges == []
    assert len(proxy.refused) == 1


def test_a_refused_client_reads_the_refusal_whatever_the_size_of_its_body(sock: Path) -> None:
    # A body larger than the socket's buffer: refused unread, the client's send broke.
    large = {**BODY, "padding": "x" * (4 << 20)}
    with (
        ModelServer() as server,
        Proxy(sock, f"{server.url}/v1", {"authorization": "Bearer real"}, CODEX),
    ):
        status, text = ask(sock, "POST", "/v1/%2e%2e/admin", large)
    assert (status, "not a plain path" in text) == (403, True)
    assert server.received == []


def test_the_token_limit_refuses_the_next_request(sock: Path) -> None:
    with (
        ModelServer(answer=lambda request: "x" * 400) as server,
        Proxy(sock, server.url, {}, ROUTES, max_tokens=50) as proxy,
    ):
        first = ask(sock, "POST", "/v1/messages")
        second = ask(sock, "POST", "/v1/messages")
    assert first[0] == 200
    assert second[0] == 403
    assert "token limit 50 reached (101 spent)" in second[1]
    assert len(server.received) == 1
    assert proxy.limit == "token limit 50 reached (101 spent)"


def test_a_replay_answers_in_order_per_path_and_model_and_names_what_it_lacks(
    sock: Path,
) -> None:
    recorded = [
        Exchange(method="POST", path="/v1/messages", model="a", status=200, body="first a"),
        Exchange(method="POST", path="/v1/messages", model="b", status=200, body="only b"),
        Exchange(method="POST", path="/v1/messages", model="a", status=200, body="second a"),
    ]
    with Proxy(sock, "http://127.0.0.1:9", {}, ROUTES, replay=recorded) as proxy:
        answers = [
            ask(sock, "POST", "/v1/messages?beta=true", {**BODY, "model": model})
            for model in ("a", "a", "b", "b")
        ]
    assert [text for _, text in answers[:3]] == ["first a", "second a", "only b"]
    assert answers[3][0] == 400
    assert proxy.unmatched == ["POST /v1/messages (model b) #2"]


def test_usage_is_read_from_each_api_shape() -> None:
    anthropic = (
        'event: message_start\ndata: {"message": {"usage": {"input_tokens": 7, '
        '"cache_read_input_tokens": 3, "output_tokens": 1}}}\n\n'
        'event: message_delta\ndata: {"usage": {"output_tokens": 12}}\n\n'
    )
    responses = 'data: {"type": "response.completed", "response": {"usage": {"input_tokens": 5, "output_tokens": 6}}}\n'
    chat = '{"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}'
    assert usage_of(anthropic) == (10, 12)
    assert usage_of(responses) == (5, 6)
    assert usage_of(chat) == (2, 3)
    assert usage_of('data: {"usage": {"input_tokens": -5, "output_tokens": "9"}}') == (0, 0)
    # Nested past the parser's depth: still counted, by pattern.
    deep = '{"a": ' * 1000 + "1" + "}" * 1000
    nested = f'{{"usage": {{"input_tokens": 5000, "output_tokens": 9000}}, "content": {deep}}}'
    assert usage_of(nested) == (5000, 9000)


def test_the_harvest_takes_plain_files_only(tmp_path: Path) -> None:
    workspace = tmp_path / "w"
    (workspace / "kernel_src").mkdir(parents=True)
    (workspace / "kernel_src" / "k.cpp").write_text("int k;\n")
    (workspace / TASK_FILE).write_text("the task")
    (workspace / ".claude" / "skills" / "s").mkdir(parents=True)
    (workspace / ".claude" / "skills" / "s" / "SKILL.md").write_text("skill")
    (workspace / "build").mkdir()
    (workspace / "build" / "out.txt").write_text("built")
    (workspace / "passwd").symlink_to("/etc/passwd")
    (workspace / "linked").symlink_to(workspace / "kernel_src", target_is_directory=True)
    os.mkfifo(workspace / "pipe")  # read as a file, it would block forever
    (workspace / "big.h").write_text("x" * (MAX_FILE_BYTES + 1))
    (workspace / "binary.bin").write_bytes(b"\xff\xfe\x00")
    files, notes = harvest(workspace)
    assert files == {"kernel_src/k.cpp": "int k;\n"}
    assert sorted(notes) == [
        "left out 'big.h': larger than 1048576 bytes",
        "left out 'binary.bin': not UTF-8 text",
        "left out 'linked': not a regular file",
        "left out 'passwd': not a regular file",
        "left out 'pipe': not a regular file",
    ]


def test_the_harvest_stops_at_a_replys_limits(tmp_path: Path) -> None:
    for index in range(MAX_FILES + 5):
        (tmp_path / f"f{index:04d}.h").write_text("x")
    files, notes = harvest(tmp_path)
    assert len(files) == MAX_FILES
    assert notes == [
        f"left out 'f{MAX_FILES:04d}.h' and what follows: a reply holds at most "
        f"{MAX_FILES} files, 4194304 bytes"
    ]


def test_a_skill_is_installed_without_its_links(tmp_path: Path) -> None:
    skill_dir = tmp_path / "my-skill"
    (skill_dir / "references").mkdir(parents=True)
    (skill_dir / "SKILL.md").write_text("---\nname: my-skill\ndescription: d\n---\nbody\n")
    (skill_dir / "references" / "a.md").write_text("ref")
    (skill_dir / "references" / "secret").symlink_to("/etc/passwd")
    skill = load_skill(skill_dir)
    target = install_skill(skill, tmp_path / "ws" / ".claude" / "skills")
    installed = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert installed == ["SKILL.md", "references/a.md"]
    before = skill.digest()
    (skill_dir / "references" / "a.md").write_text("changed")
    assert skill.digest() != before  # a changed reference is a new recording


def raw(path: Path, data: bytes, close: bool = True) -> bytes:
    """Bytes sent as they are on the proxy's socket, and what came back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(str(path))
        connection.sendall(data)
        if close:
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        while piece := connection.recv(65536):
            answer += piece
        return answer


def test_malformed_and_short_bodies_are_refused_not_forwarded(sock: Path) -> None:
    head = b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n"
    with ModelServer() as server, Proxy(sock, server.url, {}, ROUTES) as proxy:
        # A negative chunk size would read until the connection closes, past every cap.
        negative = raw(sock, head + b"transfer-encoding: chunked\r\n\r\n-1\r\n" + b"x" * 1000)
        short = raw(sock, head + b"content-length: 100\r\n\r\n{}")
        huge = raw(sock, head + b"content-length: 999999999999\r\n\r\n")
        # A header folded over two lines: an upstream that unfolds it would read a second key.
        folded = raw(sock, head + b"anthropic-beta: a\r\n x-api-key: mine\r\n\r\n")
        # Not ASCII: no plain path.
        foreign = raw(sock, b"POST /v1/messages?\xc2\xaa=1 HTTP/1.1\r\nhost: x\r\n\r\n")
    assert folded.startswith(b"HTTP/1.1 400")
    assert foreign.startswith(b"HTTP/1.1 403")
    for answer in (negative, short, huge):
        assert answer.startswith(b"HTTP/1.1 413")
    assert server.received == []
    assert proxy.exchanges == []


def test_a_flood_of_connections_is_closed_unanswered(sock: Path) -> None:
    with ModelServer() as server, Proxy(sock, server.url, {}, ROUTES) as proxy:
        held = []
        for _ in range(40):  # each open, sending nothing
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.connect(str(sock))
            held.append(connection)
        time.sleep(0.5)
        closed = 0
        for connection in held:
            connection.settimeout(0.2)
            with contextlib.suppress(TimeoutError):  # still open: it has a slot
                closed += connection.recv(1) == b""
        assert closed == 40 - 16  # past 16 at once
        for connection in held:
            connection.close()
        time.sleep(0.5)
        status, _ = ask(sock, "POST", "/v1/messages")  # the slots are free again
    assert status == 200
    assert "more than 16 connections at once" in proxy.refused


def test_parallel_requests_cannot_overrun_the_token_limit(sock: Path) -> None:
    with (
        ModelServer(answer=lambda request: "x" * 400, latency_s=0.5) as server,
        Proxy(sock, server.url, {}, ROUTES, max_tokens=50),
        ThreadPoolExecutor(8) as pool,
    ):
        answers = list(pool.map(lambda _: ask(sock, "POST", "/v1/messages"), range(8)))
    assert sorted(status for status, _ in answers) == [200] + [403] * 7
    assert len(server.received) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"content_type": "text/plain\r\nset-cookie: injected=1"},
        {"status": 101},
        {"status": 999},
        {"input_tokens": -1000000},
        {"method": "GET /x HTTP/1.1\r\n"},
        {"path": "/v1/messages\r\nx: y"},
    ],
)
def test_a_hostile_cassette_exchange_is_refused(change: dict[str, object]) -> None:
    fine = {"method": "POST", "path": "/v1/messages", "status": 200, "body": "ok"}
    Exchange.model_validate({**fine, "content_type": "text/event-stream; charset=utf-8"})
    with pytest.raises(ValidationError):
        Exchange.model_validate({**fine, **change})
