"""Agent CLIs as the model under test: the real Claude Code and Codex, run by real pytest
sessions in their sandbox behind the model proxy, against the loopback server answering as the
Messages API and the Responses API do; their projects are built and tested as any sample's."""

from __future__ import annotations

import base64
import json
import os
import posixpath
import shutil
from collections.abc import Callable
from dataclasses import dataclass
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


# Run in the sandbox by the CLI's shell: take descriptor 1 (the CLI's output) of every other
# process there, and trace it.
REACH_INTO = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
got = set()
for name in os.listdir("/proc"):
    if not name.isdigit() or int(name) == os.getpid():
        continue
    pidfd = libc.syscall(434, int(name), 0)  # pidfd_open
    if pidfd < 0:
        continue
    done = libc.syscall(438, pidfd, 1, 0)  # pidfd_getfd
    got.add("getfd ok" if done >= 0 else f"getfd errno {ctypes.get_errno()}")
    done = libc.ptrace(16, int(name), 0, 0)  # PTRACE_ATTACH
    got.add("ptrace ok" if done == 0 else f"ptrace errno {ctypes.get_errno()}")
print("reach into:", sorted(got))
"""


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


@dataclass(frozen=True)
class Cli:
    """How a test drives one agent CLI: its spec against the server, its key, its model's
    answers, the last event of its transcript."""

    spec: Callable[[str], str]
    key: str
    answer: Callable[[dict[str, str]], Callable[[Received], str | Answer]]
    last_event: str
    header: str  # the key's header as the server sees it


CLIS = [
    pytest.param(
        Cli(
            lambda url: f"agent:claude-code:claude-sonnet-4-5@{url}",
            "ANTHROPIC_API_KEY",
            writes,
            "result",
            "x-api-key",
        ),
        marks=needs_claude,
        id="claude-code",
    ),
    pytest.param(
        Cli(
            lambda url: f"agent:codex:upskill-test-model@{url}/v1",
            "OPENAI_API_KEY",
            codex_writes,
            "turn.completed",
            "authorization",
        ),
        marks=needs_codex,
        id="codex",
    ),
]


@pytest.mark.parametrize("cli", CLIS)
def test_an_agent_cli_writes_a_project_that_is_built_and_tested_and_replays(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    cli: Cli,
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    monkeypatch.setenv(cli.key, KEY)
    args = [
        *upskill_args,
        f"--upskill-skill={SKILL}",
        "--upskill-report=r.json",
        "--upskill-cassette-dir=c",
    ]
    with ModelServer(answer=cli.answer(GOOD)) as server:
        spec = f"--upskill-model={cli.spec(server.url)}"
        # Two xdist workers: each sample's CLI runs once, whichever worker starts it.
        result = pytester.runpytest(spec, *args, "--upskill-html=r.html", "-n", "2")
    result.assert_outcomes(passed=2)
    samples = report(pytester)["samples"]
    for sample in samples:
        assert (sample["outcome"], sample["built"], sample["cached"]) == ("passed", True, False)
        assert sample["usage"]["output_tokens"] > 0
        events = [json.loads(line) for line in Path(sample["transcript"]).read_text().splitlines()]
        assert events[-1]["type"] == cli.last_event
    page = (pytester.path / "r.html").read_text()
    assert page.count("transcript.jsonl (") == 2  # each sample's events, a line each
    # Two requests a run (write, then done), each with the real key, put on by the proxy: the
    # CLI held a placeholder.
    assert len(server.received) == 4
    assert all(KEY in r.headers[cli.header] for r in server.received)
    # Each client lists the skills of its project in what it sends: the skill condition's only.
    listed = [SKILL_DESCRIPTION in json.dumps(r.body) for r in server.received]
    assert sorted(listed) == [False, False, True, True]
    # Replayed with the server gone and no key: the real CLI runs again, answered by the
    # recording.
    monkeypatch.delenv(cli.key)
    replayed = pytester.runpytest(spec, *args, "--upskill-record=none")
    replayed.assert_outcomes(passed=2)
    again = report(pytester)["samples"]
    assert [(s["outcome"], s["cached"]) for s in again] == [("passed", True)] * 2
    assert len(server.received) == 4


@needs_claude
def test_the_header_names_the_cli_and_the_one_endpoint_it_reaches(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    spec = "agent:claude-code@http://user:pw@127.0.0.1:9/base"
    result = pytester.runpytest(f"--upskill-model={spec}")
    result.stdout.fnmatch_lines(
        [
            "upskill: agent:claude-code: */claude, in a sandbox that writes only its workspace "
            "and reaches only http://127.0.0.1:9/base (through a proxy that holds the key)"
        ]
    )


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
            "r = c.getresponse(); print('connect', r.status, r.read())\"; "
            f"echo {base64.b64encode(REACH_INTO.encode()).decode()} | base64 -d | python3"
        )

        def leaves(request: Received) -> str | Answer:
            if answered_tools(request):
                return "Done."
            return Answer("Looking around.", [("Bash", {"command": probe})])

        with ModelServer(answer=leaves) as server:
            spec = f"--upskill-model=agent:claude-code:claude-sonnet-4-5@{server.url}"
            result = pytester.runpytest(
                spec, *upskill_args, "--upskill-report=r.json", "--upskill-max-sample-time=60"
            )
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
    # No process of the sandbox can take another's descriptors (the CLI's output) or trace it.
    assert "reach into: ['getfd errno 1', 'ptrace errno 1']" in said
    # The model wrote no project: the sample fails at extract, nothing else is harmed.
    result.assert_outcomes(failed=1)
    (sample,) = report(pytester)["samples"]
    assert (sample["outcome"], sample["stage"]) == ("failed", "extract")


def test_a_missing_cli_skips_its_samples_with_the_install_command(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str], tmp_path: Path
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(empty))  # the CLI is nowhere to be found
        result = pytester.runpytest(
            "--upskill-model=agent:codex", *upskill_args, "-rs", "--upskill-isolation=process"
        )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "upskill: agent:codex: codex is not on PATH: its samples skip "
            "(npm install -g @openai/codex)",
            "SKIPPED * codex is not installed (codex is not on PATH): npm install -g @openai/codex",
        ]
    )


@needs_claude
def test_the_time_limit_stops_the_cli_and_fails_the_sample(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with ModelServer(answer=writes(GOOD), latency_s=60) as server:
        spec = f"--upskill-model=agent:claude-code:claude-sonnet-4-5@{server.url}"
        result = pytester.runpytest(
            spec, *upskill_args, "--upskill-report=r.json", "--upskill-max-sample-time=4"
        )
    result.assert_outcomes(failed=1)
    (sample,) = report(pytester)["samples"]
    assert sample["stage"] == "extract"
    assert sample["reason"].startswith("time limit 4 s reached: ")
    assert sample["latency_s"] < 30


@needs_claude
def test_an_agent_clis_transcript_reaches_a_worker_on_another_machine(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from test_remote_workers import _worker_args

    pytester.makepyfile(ROW_SOFTMAX_TEST)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with ModelServer(answer=writes(GOOD)) as server:
        spec = f"--upskill-model=agent:claude-code:claude-sonnet-4-5@{server.url}"
        # Workers with a /tmp of their own: the controller runs each CLI, in its /tmp.
        result = pytester.runpytest(
            spec, *upskill_args, f"--upskill-skill={SKILL}", "--upskill-report=r.json",
            "--upskill-html=r.html", *_worker_args(pytester),
        )  # fmt: skip
    result.assert_outcomes(passed=2)
    # Each sample's events are in its folder, on its worker's machine (here a copy).
    copies = pytester.path.parent / f"{pytester.path.name}-copies"
    kept = list(copies.glob("*/base/popen-gw*/*/transcript.jsonl"))
    assert len(kept) == 2
    for path in kept:
        assert json.loads(path.read_text().splitlines()[-1])["type"] == "result"
    transcripts = {Path(sample["transcript"]).name for sample in report(pytester)["samples"]}
    assert transcripts == {"transcript.jsonl"}
