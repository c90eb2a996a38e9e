"""Attacks on the agent loop, each from a review that got it through: a model's tool calls and
a kernel's test output are hostile. Each ends as that sample's clear failure, never as a crash
of the session, an error or a skip outside the rates, or a pass of a project never tested."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from model_server import Answer, ModelServer, Received
from test_agent import BROKEN, GOOD, KERNEL, conversation, run, samples, writes

from conftest import ROW_SOFTMAX_TEST

INIT = "torch-ext/row_softmax/__init__.py"


def scripted(*turns: Answer | str) -> Any:
    """A model that answers turn by turn from a script."""

    def answer(request: Received) -> Answer | str:
        return turns[min(len(conversation(request)) // 2, len(turns) - 1)]

    return answer


def test_arguments_nested_a_thousand_deep_are_a_tool_error(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    """json.loads raises RecursionError on them: it was an INTERNALERROR, every sample lost."""
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    deep = '{"path": ' + "[" * 3000 + "]" * 3000 + "}"
    with ModelServer(answer=scripted(Answer("", [("read_file", deep)]))) as server:
        model = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(pytester, upskill_args, model, "--upskill-turns=2")
    result.assert_outcomes(failed=1)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    said = [m["content"] for m in server.received[1].history if m["role"] == "tool"]
    assert said[0].startswith("error: the arguments must be a JSON object")


def test_a_kernel_that_skips_its_test_fails_in_a_loop(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    """A skip is out of every rate: a kernel that raises one while failing would lift its
    condition's rate."""
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    skips = {
        **GOOD,
        INIT: GOOD[INIT]
        + "\n\ndef row_softmax(x):\n    import pytest\n    pytest.skip('not today')\n",
    }
    with ModelServer(answer=scripted(Answer("", [*writes(skips), ("run_tests", {})]))) as server:
        model = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(pytester, upskill_args, model, "--upskill-turns=2")
    result.assert_outcomes(failed=1)
    (sample,) = samples(pytester)
    assert (sample["outcome"], sample["stage"]) == ("failed", "check")
    assert "a skip while the kernel runs is a failure" in sample["reason"]


@pytest.mark.parametrize("isolation", ["sandbox", "process"])
def test_run_tests_tests_what_the_tools_built_not_the_reply_text(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str], isolation: str
) -> None:
    """Turn 1 writes a wrong kernel and builds it; turn 2 calls run_tests, its text holding a
    good project as fenced blocks. That text was extracted and tested (a pass, with
    --upskill-isolation=process): the project the tools built is what is tested."""
    from pytest_upskill.project.extract import render_reply

    wrong = {**GOOD, KERNEL: GOOD[KERNEL].replace("float sum = 0.f;", "float sum = 1.f;")}
    model = scripted(
        Answer("", [*writes(wrong), ("build", {})]),
        Answer(render_reply(GOOD), [("run_tests", {})]),
    )
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=model) as server:
        spec = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(
            pytester, upskill_args, spec, "--upskill-turns=2", f"--upskill-isolation={isolation}"
        )
    result.assert_outcomes(failed=1)
    (sample,) = samples(pytester)
    assert (sample["stage"], sample["turns"]) == ("check", 2)
    assert "the reply holds no files" not in sample["reason"]
    assert "Tensor-likes are not close" in sample["reason"]  # the wrong kernel was tested


def test_build_in_one_turn_and_test_in_the_next_passes(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    model = scripted(Answer("", [*writes(GOOD), ("build", {})]), Answer("", [("run_tests", {})]))
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=model) as server:
        spec = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(pytester, upskill_args, spec, "--upskill-turns=3")
    result.assert_outcomes(passed=1)
    (sample,) = samples(pytester)
    assert (sample["passed_at_turn"], [t["stage"] for t in sample["per_turn"]]) == (
        2,
        ["load", "check"],
    )


def test_a_lone_surrogate_is_a_tool_error_not_the_harnesss(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    """A path or content holding \\ud800 (a valid JSON escape) ended as an error, out of
    the rates."""
    calls: list[tuple[str, dict[str, Any] | str]] = [
        ("write_file", '{"path": "\\ud800.txt", "content": "x"}'),
        ("write_file", '{"path": "notes.txt", "content": "\\udfff"}'),
        *writes(BROKEN),
        ("build", {}),
    ]
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=scripted(Answer("", calls))) as server:
        spec = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(pytester, upskill_args, spec, "--upskill-turns=2")
    result.assert_outcomes(failed=1)
    (sample,) = samples(pytester)
    assert (sample["outcome"], sample["stage"]) == ("failed", "build")
    said = [m["content"] for m in server.received[1].history if m["role"] == "tool"]
    assert said[0].startswith("error: path must be text")
    assert said[1].startswith("error: content is not text")


def test_the_time_limit_is_checked_before_each_build_of_a_turn(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    """One turn may build 64 times; the limit was only looked at between turns."""
    calls = [*writes(BROKEN), ("build", {}), *writes(GOOD), ("build", {}), ("run_tests", {})]
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=scripted(Answer("", calls))) as server:
        spec = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(
            pytester, upskill_args, spec, "--upskill-turns=5", "--upskill-max-sample-time=0.001"
        )
    result.assert_outcomes(failed=1)
    (sample,) = samples(pytester)
    assert sample["reason"].startswith("time limit 0.001 s reached")
    assert sample["reason"].endswith("the project was never built")
    assert not sample["built"]


def test_a_conversation_in_a_cassette_holds_no_secret_of_this_process(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next turn's request quotes the last reply, which may quote anything; cassettes are
    committed. Replies were redacted, the conversation in the request was not."""
    secret = "sk-loopback-0123456789abcdefXYZ"
    monkeypatch.setenv("LOOPBACK_API_KEY", secret)
    leaky = {**BROKEN, KERNEL: f"// {secret}\n" + BROKEN[KERNEL]}
    from pytest_upskill.project.extract import render_reply

    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=scripted(render_reply(leaky), render_reply(GOOD))) as server:
        spec = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(pytester, upskill_args, spec, "--upskill-turns=2", "--upskill-agent=feedback")
    result.assert_outcomes(passed=1)
    cassettes = list((pytester.path / ".upskill" / "cassettes").glob("*.json"))
    assert len(cassettes) == 2
    for path in cassettes:
        assert secret not in path.read_text()
    assert any("[redacted]" in json.dumps(json.loads(p.read_text())["request"]) for p in cassettes)
