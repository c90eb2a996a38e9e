"""Agent CLIs as the model under test: the real Claude Code, run by a real pytest session in
its sandbox behind the model proxy, against the loopback server answering as the Messages API
does; its project is built and tested as any sample's."""

from __future__ import annotations

import base64
import json
import os
import posixpath
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from model_server import Answer, ModelServer, Received

from conftest import EXAMPLES, ROW_SOFTMAX_TEST
from pytest_upskill.generate.providers.oracle import read_project

GOOD = read_project(EXAMPLES / "solutions" / "row_softmax")
SKILL = EXAMPLES / "skills" / "cpu-kernels"
SKILL_DESCRIPTION = "Write correct, fast PyTorch CPU kernels as kernel-builder projects."
KEY = "sk-ant-loopback-real-key-0123456789abcdef"


def needs(program: str, package: str) -> pytest.MarkDecorator:
    """Skip where the CLI or bubblewrap is missing; fail instead where CI asks for them."""
    missing = shutil.which(program) is None or shutil.which("bwrap") is None
    if missing and os.environ.get("UPSKILL_REQUIRE_AGENT_CLIS"):
        raise RuntimeError(f"UPSKILL_REQUIRE_AGENT_CLIS is set, but {program} or bwrap is missing")
    return pytest.mark.skipif(
        missing, reason=f"needs {program} (npm install -g {package}) and bubblewrap"
    )


needs_claude = needs("claude", "@anthropic-ai/claude-code")
needs_codex = needs("codex", "@openai/codex")


def answered_tools(request: Received) -> bool:
    """Whether the last message carries the results of the model's tool calls."""
    content = request.body["messages"][-1].get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def writes(files: dict[str, str]) -> Any:
    """Claude Code's model: writes `files` with its Write tool, then says it is done."""

    def answer(request: Received) -> str | Answer:
        if answered_tools(request):
            return "Done: the project is written."
        calls: list[tuple[str, dict[str, Any] | str]] = [
            ("Write", {"file_path": f"/workspace/{path}", "content": text})
            for path, text in files.items()
        ]
        return Answer("Writing the project.", calls)

    return answer


def report(pytester: pytest.Pytester) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads((pytester.path / "r.json").read_text())
    return parsed


@needs_claude
def test_claude_code_writes_a_project_that_is_built_and_tested_and_replays(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    args = [
        *upskill_args,
        f"--upskill-skill={SKILL}",
        "--upskill-report=r.json",
        "--upskill-cassette-dir=c",
    ]
    with ModelServer(answer=writes(GOOD)) as server:
        spec = f"--upskill-model=agent:claude-code:claude-sonnet-4-5@{server.url}"
        result = pytester.runpytest(spec, *args)
    result.assert_outcomes(passed=2)
    samples = {s["condition"]: s for s in report(pytester)["samples"]}
    for sample in samples.values():
        assert (sample["outcome"], sample["built"], sample["cached"]) == ("passed", True, False)
        assert sample["usage"]["input_tokens"] > 0
        events = [json.loads(line) for line in Path(sample["transcript"]).read_text().splitlines()]
        assert events[-1]["type"] == "result"
    # Each request reached the server with the real key, put on by the proxy: the CLI held a
    # placeholder. The skill is in the skill condition's requests only, where Claude Code
    # lists the skills of its project.
    assert server.received
    assert all(r.headers["x-api-key"] == KEY for r in server.received)
    by_condition: dict[bool, list[str]] = {True: [], False: []}
    for request in server.received:
        text = json.dumps(request.body)
        by_condition["/workspace" in text and "cpu-kernels" in text].append(text)
    assert by_condition[True]
    assert by_condition[False]
    assert all(SKILL_DESCRIPTION in text for text in by_condition[True])
    assert not any(SKILL_DESCRIPTION in text for text in by_condition[False])
    # Replayed with the server gone: the real CLI runs again, answered by the recording.
    asked = len(server.received)
    replayed = pytester.runpytest(spec, *args, "--upskill-record=none")
    replayed.assert_outcomes(passed=2)
    again = {s["condition"]: s for s in report(pytester)["samples"]}
    assert {c: (s["outcome"], s["cached"]) for c, s in again.items()} == {
        "baseline": ("passed", True),
        "cpu-kernels": ("passed", True),
    }
    assert len(server.received) == asked


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@needs_claude
def test_claude_code_reaches_nothing_but_its_model_and_no_secret(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A model that makes the CLI try to leave: read a secret in the user's HOME, print its
    environment, reach another server on this machine directly and through the proxy. What
    the CLI sends back to the model (the loopback server's record) shows each attempt fail."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".secret").write_text("planted-secret-in-home-4242")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=lambda request: "other server") as other:
        other_port = other.url.rpartition(":")[2]
        probe = (
            f"cat {home}/.secret; env; "
            'python3 -c "import urllib.request as u; '
            f"print(u.urlopen('http://127.0.0.1:{other_port}/v1/models', timeout=5).read())\"; "
            "python3 -c \"import http.client as h; c = h.HTTPConnection('127.0.0.1', 8080); "
            f"c.request('GET', 'http://127.0.0.1:{other_port}/v1/models'); "
            "r = c.getresponse(); print('via proxy', r.status, r.read())\"; "
            "python3 -c \"import http.client as h; c = h.HTTPConnection('127.0.0.1', 8080); "
            f"c.request('CONNECT', '127.0.0.1:{other_port}'); "
            "r = c.getresponse(); print('connect', r.status, r.read())\""
        )

        def leaves(request: Received) -> str | Answer:
            if answered_tools(request):
                return "Done."
            return Answer("Looking around.", [("Bash", {"command": probe})])

        with ModelServer(answer=leaves) as server:
            spec = f"--upskill-model=agent:claude-code:claude-sonnet-4-5@{server.url}"
            result = pytester.runpytest(spec, *upskill_args, "--upskill-report=r.json")
    assert other.received == []
    results = [
        block
        for request in server.received
        for message in request.body["messages"]
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    assert results, "the Bash call ran and its output went back to the model"
    said = json.dumps(results)
    assert "planted-secret-in-home-4242" not in said
    assert KEY not in said
    assert "No such file" in said  # the user's home is not in the sandbox
    assert "via proxy 403" in said
    assert "connect 403" in said
    assert "only the model endpoint can be reached" in said
    # The model wrote no project: the sample fails at extract, nothing else is harmed.
    result.assert_outcomes(failed=1)
    (sample,) = report(pytester)["samples"]
    assert (sample["outcome"], sample["stage"]) == ("failed", "extract")


def codex_answered(request: Received) -> bool:
    return any(
        isinstance(item, dict) and item.get("type") == "function_call_output"
        for item in request.body.get("input", [])
    )


def codex_writes(files: dict[str, str]) -> Any:
    """Codex's model: writes `files` through its exec_command tool (byte for byte: base64 in
    the command), then says it is done."""

    def answer(request: Received) -> str | Answer:
        if codex_answered(request):
            return "Done: the project is written."
        calls: list[tuple[str, dict[str, Any] | str]] = []
        for path, text in files.items():
            encoded = base64.b64encode(text.encode()).decode()
            folder = posixpath.dirname(path) or "."
            command = f"mkdir -p {folder} && printf %s '{encoded}' | base64 -d > {path}"
            calls.append(("exec_command", {"cmd": command}))
        return Answer("Writing the project.", calls)

    return answer


@needs_codex
def test_codex_writes_a_project_that_is_built_and_tested_and_replays(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    args = [
        *upskill_args,
        f"--upskill-skill={SKILL}",
        "--upskill-report=r.json",
        "--upskill-cassette-dir=c",
    ]
    with ModelServer(answer=codex_writes(GOOD)) as server:
        spec = f"--upskill-model=agent:codex:upskill-test-model@{server.url}/v1"
        result = pytester.runpytest(spec, *args)
    result.assert_outcomes(passed=2)
    samples = {s["condition"]: s for s in report(pytester)["samples"]}
    for sample in samples.values():
        assert (sample["outcome"], sample["built"], sample["cached"]) == ("passed", True, False)
        assert sample["usage"]["output_tokens"] > 0
        events = [json.loads(line) for line in Path(sample["transcript"]).read_text().splitlines()]
        assert events[-1]["type"] == "turn.completed"
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.received)
    assert all(r.route == "/v1/responses" for r in server.received)
    # Codex lists a project's skills in its instructions: the skill condition's only.
    listed = [SKILL_DESCRIPTION in r.system for r in server.received]
    assert sorted(listed) == [False, False, True, True]  # two requests a run: write, then done
    asked = len(server.received)
    replayed = pytester.runpytest(spec, *args, "--upskill-record=none")
    replayed.assert_outcomes(passed=2)
    again = report(pytester)["samples"]
    assert [(s["outcome"], s["cached"]) for s in again] == [("passed", True)] * 2
    assert len(server.received) == asked
