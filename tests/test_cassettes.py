"""Cassettes: one file per reply, named by everything that determines it; prices."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from pytest_upskill.config import ModelSpec
from pytest_upskill.errors import SampleError
from pytest_upskill.generate.cassettes import Cassettes
from pytest_upskill.generate.prices import cost_usd
from pytest_upskill.generate.prompt import Prompt
from pytest_upskill.generate.providers import Reply, Request, ToolCall, Usage
from pytest_upskill.task import Task

REQUEST = Request(
    spec=ModelSpec.parse("openai:qwen/qwen3:8b@http://127.0.0.1:8000/v1"),
    prompt=Prompt(system="You write kernels.", user="Softmax of each row."),
    task=Task(prompt="Softmax of each row.", name="row_softmax", backend="cpu"),
    sample=0,
    temperature=0.2,
    max_tokens=4096,
)
REPLY = Reply(text="```cpp x.cpp\n```", usage=Usage(120, 40), latency_s=1.23456)


def test_a_reply_round_trips_through_its_cassette(tmp_path: Path) -> None:
    store = Cassettes(tmp_path, "new", since=time.time())
    assert store.load(REQUEST) is None
    store.save(REQUEST, REPLY)
    # Written in this session (by another process, say): as fresh as if this one had asked.
    assert store.load(REQUEST) == dataclasses.replace(REPLY, latency_s=1.235, cached=False)
    # In a later session, a replay.
    later = Cassettes(tmp_path, "new", since=time.time() + 1)
    assert later.load(REQUEST) == dataclasses.replace(REPLY, latency_s=1.235, cached=True)
    (path,) = tmp_path.iterdir()  # nothing else left behind: the write was atomic
    assert path.name.startswith("openai_qwen_qwen3_8b-")
    document = json.loads(path.read_text())
    assert document["request"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert document["request"]["messages"] == [{"role": "user", "content": "Softmax of each row."}]


def test_a_cassette_holds_no_secret_of_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cassettes are committed: a key that found its way into a reply stays out of them."""
    secret = "sk-proj-0123456789AbCdEfGhIjKlMn"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    store = Cassettes(tmp_path, "new", since=time.time())
    store.save(REQUEST, dataclasses.replace(REPLY, text=f"```cpp x.cpp\n// {secret}\n```"))
    (path,) = tmp_path.iterdir()
    assert secret not in path.read_text()
    assert "// [redacted]" in path.read_text()


@pytest.mark.parametrize(
    "change",
    [
        {"sample": 1},
        {"temperature": 0.7},
        {"max_tokens": 8192},
        {"prompt": Prompt(system="You write kernels. <skill/>", user="Softmax of each row.")},
        {"spec": ModelSpec.parse("openai:qwen/qwen3:8b@http://127.0.0.1:9000/v1")},
    ],
)
def test_everything_that_determines_a_reply_names_its_cassette(
    tmp_path: Path, change: dict[str, object]
) -> None:
    store = Cassettes(tmp_path, "new", since=0)
    assert store.path(dataclasses.replace(REQUEST, **change)) != store.path(REQUEST)  # type: ignore[arg-type]


def test_the_task_name_alone_does_not(tmp_path: Path) -> None:
    store = Cassettes(tmp_path, "new", since=0)
    renamed = Task(prompt="Softmax of each row.", name="other", backend="cpu")
    assert store.path(dataclasses.replace(REQUEST, task=renamed)) == store.path(REQUEST)


def test_all_and_off_replay_only_what_this_session_recorded(tmp_path: Path) -> None:
    Cassettes(tmp_path, "new", since=0).save(REQUEST, REPLY)
    (path,) = tmp_path.iterdir()
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    assert Cassettes(tmp_path, "none", since=time.time()).load(REQUEST) is not None
    assert Cassettes(tmp_path, "all", since=time.time()).load(REQUEST) is None
    assert Cassettes(tmp_path, "all", since=an_hour_ago - 1).load(REQUEST) is not None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "cannot be read"),
        (
            '{"schema": "pytest-upskill-cassette/1", "request": {}, "reply": {"text": 1}}',
            "is not valid",
        ),
        ('{"schema": "other/9", "request": {}, "reply": {}}', "is not valid"),
    ],
)
def test_a_damaged_cassette_is_an_error_naming_it(
    tmp_path: Path, content: str, reason: str
) -> None:
    store = Cassettes(tmp_path, "new", since=0)
    store.path(REQUEST).write_text(content)
    with pytest.raises(SampleError, match=f"cassette .*{store.path(REQUEST).name} {reason}"):
        store.load(REQUEST)


def test_cost_from_the_price_table_and_never_a_guess() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=200_000)
    spec = ModelSpec.parse
    assert cost_usd(spec("anthropic:claude-sonnet-4-5"), usage, {}) == 6.0
    assert cost_usd(spec("openai:my-finetune"), usage, {}) is None
    # A model behind its own URL is not OpenAI's price list, unless the user says so.
    assert cost_usd(spec("openai:gpt-4o@http://127.0.0.1:8080/v1"), usage, {}) is None
    mine = {"openai:gpt-4o": (1.0, 2.0)}
    assert cost_usd(spec("openai:gpt-4o@http://x/v1"), usage, mine) == 1.4
    # By its label first (a named model), else by provider:model.
    named = spec("local=openai:gpt-4o@http://x/v1")
    assert cost_usd(named, usage, {**mine, "local": (0.0, 1.0)}) == 0.2
    assert cost_usd(named, usage, mine) == 1.4
    assert cost_usd(spec("oracle"), usage, {}) == 0.0


def test_a_cassette_from_before_tool_calls_loads_with_none(tmp_path: Path) -> None:
    store = Cassettes(tmp_path, "new", since=0)
    store.save(REQUEST, REPLY)
    path = store.path(REQUEST)
    document = json.loads(path.read_text())
    assert document["reply"].pop("tool_calls") == []
    path.write_text(json.dumps(document))
    loaded = store.load(REQUEST)
    assert loaded is not None
    assert loaded.tool_calls == ()


def test_tool_call_arguments_hold_no_secret_of_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They carry the files the model writes, committed with the cassette like its text."""
    secret = "sk-proj-0123456789AbCdEfGhIjKlMn"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    arguments = json.dumps({"path": "key.txt", "content": secret})
    call = ToolCall("call_1", "write_file", arguments)
    store = Cassettes(tmp_path, "new", since=0)
    store.save(REQUEST, dataclasses.replace(REPLY, tool_calls=(call,)))
    loaded = store.load(REQUEST)
    assert loaded is not None
    assert loaded.tool_calls == (
        ToolCall("call_1", "write_file", arguments.replace(secret, "[redacted]")),
    )
    assert secret not in store.path(REQUEST).read_text()
