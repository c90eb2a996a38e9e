"""Conversations with tools: each provider sends the history and the tools in its API's own
format, and brings back the model's tool calls. The real SDKs against the loopback server."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from model_server import ARGUMENT_PIECE, Answer, ModelServer, tokens

from pytest_upskill.config import ModelSpec
from pytest_upskill.generate.cassettes import Cassettes
from pytest_upskill.generate.prompt import Prompt
from pytest_upskill.generate.providers import (
    Message,
    Provider,
    Request,
    Tool,
    ToolCall,
    ToolResult,
    provider_for,
)
from pytest_upskill.task import Task

PROMPT = Prompt(system="You write kernels.", user="Softmax of each row.")
TASK = Task(prompt="Softmax of each row.", name="row_softmax", backend="cpu")
PATH_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
TOOLS = (
    Tool("read_file", "Read one file of the project.", PATH_SCHEMA),
    Tool("build", "Build the project.", {"type": "object", "properties": {}}),
)
HISTORY = (
    Message(
        "assistant",
        "Let me look first.",
        tool_calls=(
            ToolCall("toolu_01aa", "read_file", '{"path": "softmax.cpp"}'),
            ToolCall("toolu_01bb", "build", '{"target": '),  # malformed: cut short
        ),
    ),
    Message(
        "user",
        "Two turns left.",
        tool_results=(
            ToolResult("toolu_01aa", "int main() {}"),
            ToolResult("toolu_01bb", "arguments are not JSON: '{\"target\": '", is_error=True),
        ),
    ),
    Message("assistant", "Here is the whole project."),
    Message("user", "The build failed: fix it."),
)
# A long path: its call's arguments arrive over several streamed events.
LONG_PATH = "kernels/row_softmax/softmax_kernel_" + "x" * 40 + ".cpp"

Connect = Callable[[ModelServer], Provider]


@pytest.fixture(params=["anthropic", "openai"])
def provider_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def connect(provider_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connect]:
    """Make the provider of `provider_name` for a running server."""
    made: list[Provider] = []

    def make(server: ModelServer) -> Provider:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-loopback")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        spec = "anthropic:claude-x" if provider_name == "anthropic" else f"openai:m@{server.url}/v1"
        made.append(provider_for(ModelSpec.parse(spec), timeout_s=30))
        return made[-1]

    yield make
    for provider in made:
        provider.close()


def request(spec: str = "anthropic:claude-x", **changes: Any) -> Request:
    return Request(spec=ModelSpec.parse(spec), prompt=PROMPT, task=TASK, sample=0, **changes)


def test_the_history_and_the_tools_reach_the_server_in_the_apis_format(
    provider_name: str, connect: Connect
) -> None:
    with ModelServer(answer=lambda r: "ok") as server:
        reply = connect(server).generate(request(history=HISTORY, tools=TOOLS))
    assert reply.text == "ok"
    (received,) = server.received
    assert received.user == "Softmax of each row."
    if provider_name == "anthropic":
        assert received.history == [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look first."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01aa",
                        "name": "read_file",
                        "input": {"path": "softmax.cpp"},
                    },
                    # The API takes an object: the malformed call goes back as {}.
                    {"type": "tool_use", "id": "toolu_01bb", "name": "build", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01aa",
                        "content": "int main() {}",
                        "is_error": False,
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01bb",
                        "content": "arguments are not JSON: '{\"target\": '",
                        "is_error": True,
                    },
                    {"type": "text", "text": "Two turns left."},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Here is the whole project."}],
            },
            {"role": "user", "content": [{"type": "text", "text": "The build failed: fix it."}]},
        ]
        assert received.tools == [
            {
                "name": "read_file",
                "description": "Read one file of the project.",
                "input_schema": PATH_SCHEMA,
            },
            {
                "name": "build",
                "description": "Build the project.",
                "input_schema": {"type": "object", "properties": {}},
            },
        ]
        return
    assert received.history == [
        {
            "role": "assistant",
            "content": "Let me look first.",
            "tool_calls": [
                {
                    "id": "toolu_01aa",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path": "softmax.cpp"}'},
                },
                {
                    "id": "toolu_01bb",
                    "type": "function",
                    "function": {"name": "build", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01aa", "content": "int main() {}"},
        {
            "role": "tool",
            "tool_call_id": "toolu_01bb",
            "content": "error: arguments are not JSON: '{\"target\": '",
        },
        {"role": "user", "content": "Two turns left."},
        {"role": "assistant", "content": "Here is the whole project."},
        {"role": "user", "content": "The build failed: fix it."},
    ]
    assert received.tools == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read one file of the project.",
                "parameters": PATH_SCHEMA,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "build",
                "description": "Build the project.",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]


def test_a_request_without_tools_sends_none(connect: Connect) -> None:
    with ModelServer(answer=lambda r: "ok") as server:
        connect(server).generate(request())
    (received,) = server.received
    assert "tools" not in received.body
    assert received.history == []


def test_tool_calls_come_back_in_order_with_their_arguments_as_streamed(
    provider_name: str, connect: Connect
) -> None:
    malformed = '{"target": "all", '
    answer = Answer("Reading first.", [("read_file", {"path": LONG_PATH}), ("build", malformed)])
    with ModelServer(answer=lambda r: answer) as server:
        reply = connect(server).generate(request(tools=TOOLS))
    assert reply.text == "Reading first."
    prefix = "toolu_01" if provider_name == "anthropic" else "call_"
    assert [c.id[: len(prefix)] for c in reply.tool_calls] == [prefix, prefix]
    assert len({c.id for c in reply.tool_calls}) == 2
    arguments = json.dumps({"path": LONG_PATH})
    assert len(arguments) > 3 * ARGUMENT_PIECE  # several streamed pieces
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("read_file", arguments),
        ("build", malformed),
    ]
    assert len(server.received) == 1
    prompt_tokens = tokens(PROMPT.system + PROMPT.user)
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (
        prompt_tokens,
        tokens("Reading first." + arguments + malformed),
    )
    assert reply.truncated is False  # a reply that asks for tools ended where the model chose
    assert reply.first_token_s is not None
    assert reply.generation_s is not None


def test_a_reply_of_tool_calls_alone_has_a_first_token(connect: Connect) -> None:
    with ModelServer(answer=lambda r: Answer(tool_calls=[("build", {})])) as server:
        reply = connect(server).generate(request(tools=TOOLS))
    assert reply.text == ""
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("build", "{}")]
    assert reply.first_token_s is not None


def test_a_tool_call_cut_at_the_token_limit_keeps_what_was_written(connect: Connect) -> None:
    answer = Answer("Hi.", [("read_file", {"path": LONG_PATH}), ("build", {})])
    with ModelServer(answer=lambda r: answer) as server:
        reply = connect(server).generate(request(tools=TOOLS, max_tokens=10))
    assert reply.truncated is True
    (call,) = reply.tool_calls  # the second never began
    assert call.arguments == json.dumps({"path": LONG_PATH})[: 40 - len("Hi.")]


def test_a_reply_fed_back_is_the_next_requests_history(
    provider_name: str, connect: Connect
) -> None:
    """The loop's round trip: the model's calls and their results, sent back as they came."""
    answers: Iterator[str | Answer] = iter([Answer("", [("read_file", {"path": "a.cpp"})]), "done"])
    with ModelServer(answer=lambda r: next(answers)) as server:
        provider = connect(server)
        first = provider.generate(request(tools=TOOLS))
        (call,) = first.tool_calls
        history = (
            Message("assistant", first.text, first.tool_calls),
            Message("user", tool_results=(ToolResult(call.id, "int x;"),)),
        )
        assert provider.generate(request(tools=TOOLS, history=history)).text == "done"
    said, results = server.received[1].history
    if provider_name == "anthropic":
        assert said["content"] == [
            {"type": "tool_use", "id": call.id, "name": "read_file", "input": {"path": "a.cpp"}}
        ]
        assert results["content"][0]["tool_use_id"] == call.id
    else:
        assert said["content"] is None
        assert said["tool_calls"][0]["id"] == call.id
        assert results == {"role": "tool", "tool_call_id": call.id, "content": "int x;"}


def test_a_cassette_keeps_the_tool_calls(connect: Connect, tmp_path: Path) -> None:
    answer = Answer("Reading.", [("read_file", {"path": LONG_PATH}), ("build", '{"x"')])
    asked = request(tools=TOOLS, history=HISTORY)
    with ModelServer(answer=lambda r: answer) as server:
        reply = connect(server).generate(asked)
    store = Cassettes(tmp_path, "new", since=time.time() + 1)
    store.save(asked, reply)
    replayed = store.load(asked)
    assert replayed is not None
    assert replayed.tool_calls == reply.tool_calls
    assert replayed.text == reply.text


@pytest.mark.parametrize(
    "history",
    [
        (),
        HISTORY[:1],
        HISTORY[:2],
        (dataclasses.replace(HISTORY[0], tool_calls=HISTORY[0].tool_calls[:1]), *HISTORY[1:]),
        (HISTORY[0], dataclasses.replace(HISTORY[1], tool_results=()), *HISTORY[2:]),
    ],
)
def test_the_cassette_key_differs_with_the_history(
    tmp_path: Path, history: tuple[Message, ...]
) -> None:
    store = Cassettes(tmp_path, "new", since=0)
    full = request(history=HISTORY, tools=TOOLS)
    assert store.path(dataclasses.replace(full, history=history)) != store.path(full)
    assert store.path(dataclasses.replace(full, tools=TOOLS[:1])) != store.path(full)


def test_the_oracle_answers_a_request_with_tools_in_text() -> None:
    oracle = provider_for(ModelSpec.parse("oracle"))
    reference = Path(__file__).parents[1] / "examples" / "solutions" / "row_softmax"
    task = Task(prompt="Softmax of each row.", name="s", backend="cpu", reference=reference)
    asked = dataclasses.replace(request("oracle"), task=task, tools=TOOLS, history=HISTORY)
    reply = oracle.generate(asked)
    assert reply.tool_calls == ()
    assert "```" in reply.text


@pytest.mark.parametrize("provider_name", ["anthropic", "openai"])
def test_the_server_answers_tool_calls_unstreamed_too(provider_name: str) -> None:
    """Its plain JSON form, as the SDKs read it (the providers always stream)."""
    import anthropic
    import openai

    answer = Answer("Hm.", [("read_file", {"path": "a.cpp"}), ("build", "{oops")])
    with ModelServer(answer=lambda r: answer) as server:
        if provider_name == "anthropic":
            with anthropic.Anthropic(api_key="k", base_url=server.url) as claude:
                message = claude.messages.create(
                    model="m", max_tokens=100, messages=[{"role": "user", "content": "x"}]
                )
            assert message.stop_reason == "tool_use"
            calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
            assert calls == [("read_file", {"path": "a.cpp"}), ("build", {})]
            return
        with openai.OpenAI(api_key="k", base_url=f"{server.url}/v1") as gpt:
            completion = gpt.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Hm."
    assert [
        (c.function.name, c.function.arguments)
        for c in choice.message.tool_calls or []
        if c.type == "function"
    ] == [("read_file", '{"path": "a.cpp"}'), ("build", "{oops")]


def test_tool_calls_from_a_server_that_numbers_none_are_told_apart() -> None:
    """Some OpenAI-compatible servers leave out each call's `index`: a piece with an id
    begins a call, one without continues the last."""
    from openai.types.chat import ChatCompletionChunk

    from pytest_upskill.generate.providers._sdk import Stopwatch
    from pytest_upskill.generate.providers.openai import _StreamedChoice

    def chunk(*calls: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
        choice = {"index": 0, "delta": {"tool_calls": list(calls)}, "finish_reason": finish}
        return ChatCompletionChunk.construct(
            id="x", object="chat.completion.chunk", created=1, model="m", choices=[choice]
        )

    reading = _StreamedChoice(Stopwatch())
    reading.add(chunk({"id": "a", "function": {"name": "read_file", "arguments": '{"pa'}}))
    reading.add(chunk({"function": {"arguments": 'th": "x"}'}}))
    reading.add(chunk({"id": "b", "function": {"name": "build", "arguments": "{}"}}))
    reading.add(chunk(finish="tool_calls"))
    reply = reading.reply()
    assert reply.tool_calls == (
        ToolCall("a", "read_file", '{"path": "x"}'),
        ToolCall("b", "build", "{}"),
    )
    assert reply.truncated is False
