"""The agent loop (--upskill-turns): feedback and tools modes, through the real SDKs against the
loopback server, with real builds in the sandbox and the user's test in the test process."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
from model_server import Answer, ModelServer, Received, loopback_model

from conftest import EXAMPLES, ROW_SOFTMAX_TEST
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.extract import render_reply

KERNEL = "kernel_src/row_softmax.cpp"
GOOD = read_project(EXAMPLES / "solutions" / "row_softmax")
BROKEN = {**GOOD, KERNEL: GOOD[KERNEL].replace("float sum = 0.f;", "flaot sum = 0.f;")}


def conversation(request: Received) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = request.body["messages"]
    return [m for m in messages if m["role"] != "system"]


def fixes_what_it_is_told(request: Received) -> str:
    """A model that writes a typo first, and fixes that one file once it reads the compiler's
    error about it."""
    said = conversation(request)
    if len(said) == 1:
        return render_reply(BROKEN)
    assert "flaot" in said[-1]["content"]  # it was shown the compiler's error
    return render_reply({KERNEL: GOOD[KERNEL]})


def run(pytester: pytest.Pytester, upskill_args: list[str], *args: str) -> pytest.RunResult:
    return pytester.runpytest("--upskill-report=r.json", *upskill_args, *args)


def samples(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    parsed: list[dict[str, Any]] = json.loads((pytester.path / "r.json").read_text())["samples"]
    return parsed


def test_feedback_turns_fix_a_build_error_and_one_turn_does_not(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    pytester.makeini("[pytest]\nupskill_prices =\n    openai:m = 2.0 0\n")
    with ModelServer(answer=fixes_what_it_is_told) as server:
        model = f"--upskill-model=openai:m@{server.url}/v1"
        args = [model, "--upskill-agent=feedback", "--upskill-cassette-dir=c"]
        looped = run(pytester, upskill_args, *args, "--upskill-turns=2")
        looped.assert_outcomes(passed=1)
        (sample,) = samples(pytester)
        (row,) = json.loads((pytester.path / "r.json").read_text())["summary"]
        asked = len(server.received)
        single = run(pytester, upskill_args, *args, "--upskill-turns=1")
    single.assert_outcomes(failed=1)
    assert (sample["turns"], sample["passed_at_turn"], sample["agent"]) == (2, 2, "feedback")
    assert [(t["turn"], t["stage"], t["outcome"]) for t in sample["per_turn"]] == [
        (1, "build", "failed"),
        (2, "check", "passed"),
    ]
    assert "flaot" in sample["per_turn"][0]["reason"]
    assert sample["usage"]["output_tokens"] == sum(t["output_tokens"] for t in sample["per_turn"])
    usage = sample["usage"]
    assert row["mean_tokens_to_pass"] == usage["input_tokens"] + usage["output_tokens"]
    assert row["mean_cost_to_pass"] == pytest.approx(usage["input_tokens"] * 2e-6)  # 2 USD / M
    assert asked == 2
    (one,) = samples(pytester)
    assert (one["outcome"], one["stage"], one["turns"]) == ("failed", "build", 1)
    looped.stdout.fnmatch_lines(
        [
            "upskill: agent loop of up to 2 turns a sample, ending at the first pass "
            "(openai:m feedback); skills preloaded",
            "pass@turn openai:m baseline: turn 1 0%, turn 2 100%; * tokens to a pass on average ($0.00*)",
        ]
    )
    # Replayed with the server gone: each turn's reply comes from its own cassette.
    replayed = run(pytester, upskill_args, *args, "--upskill-turns=2", "--upskill-record=none")
    replayed.assert_outcomes(passed=1)
    (again,) = samples(pytester)
    assert [t["stage"] for t in again["per_turn"]] == ["build", "check"]


SKILL = EXAMPLES / "skills" / "cpu-kernels"


def reads_the_skill_first(request: Received) -> str:
    """A model that, offered a skill by its description, reads SKILL.md before it writes."""
    said = conversation(request)
    if "<available_skills>" in request.system and len(said) == 1:
        return "READ_SKILL_FILE cpu-kernels/SKILL.md"
    return render_reply(GOOD)


def test_a_disclosed_skill_read_by_path_in_feedback_mode(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=reads_the_skill_first) as server:
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{server.url}/v1",
            f"--upskill-skill={SKILL}",
            "--upskill-agent=feedback",
            "--upskill-skill-mode=disclose",
            "--upskill-turns=3",
        )
    result.assert_outcomes(passed=2)
    by_condition = {s["condition"]: s for s in samples(pytester)}
    skilled, baseline = by_condition["cpu-kernels"], by_condition["baseline"]
    assert (skilled["skill_loaded_at_turn"], skilled["passed_at_turn"]) == (1, 2)
    assert (baseline["skill_loaded_at_turn"], baseline["passed_at_turn"]) == (None, 1)
    # What the model read is the skill's own file, and only the skill condition was offered it.
    skill_text = (SKILL / "SKILL.md").read_text().strip()[-200:]
    second = [r for r in server.received if len(conversation(r)) == 3]
    assert len(second) == 1
    assert skill_text in conversation(second[0])[-1]["content"]
    rows = json.loads((pytester.path / "r.json").read_text())["summary"]
    assert {r["condition"]: r["skill_load_rate"] for r in rows} == {
        "baseline": 0.0,
        "cpu-kernels": 1.0,
    }
    result.stdout.fnmatch_lines(
        ["pass@turn openai:m cpu-kernels: *; skill read in 100% of samples"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upskill-skill-mode=disclose"], "--upskill-skill-mode=disclose needs --upskill-turns"),
        (["--upskill-turns=2", "--upskill-isolation=off"], "--upskill-turns above 1 needs"),
        (["--upskill-turns=2", "--pdb"], "--pdb and --trace test kernels in this process*"),
    ],
)
def test_loop_options_that_cannot_work_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--upskill-model=oracle", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}*"])


def writes(files: dict[str, str]) -> list[tuple[str, dict[str, Any] | str]]:
    return [("write_file", {"path": path, "content": text}) for path, text in files.items()]


def tool_user(request: Received) -> Answer:
    """A model with tools: writes the project with a typo and builds; reads the compiler's
    error in the build's result, fixes the file and runs the tests."""
    history = request.history
    if not history:
        return Answer("Writing the project.", [*writes(BROKEN), ("build", {})])
    assert "flaot" in json.dumps(history[-1])  # the build's result came back to it
    return Answer("", [*writes({KERNEL: GOOD[KERNEL]}), ("run_tests", {})])


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_tools_write_build_fix_and_test_through_each_sdk(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=tool_user) as server:
        model = loopback_model(provider, server, monkeypatch)
        result = run(pytester, upskill_args, f"--upskill-model={model}", "--upskill-turns=4")
    result.assert_outcomes(passed=1)
    (sample,) = samples(pytester)
    assert (sample["agent"], sample["turns"], sample["passed_at_turn"]) == ("tools", 2, 2)
    logged = [(t["stage"], t["outcome"], t["tool_calls"]) for t in sample["per_turn"]]
    assert logged == [
        ("build", "failed", ["write_file"] * len(BROKEN) + ["build"]),
        ("check", "passed", ["write_file", "run_tests"]),
    ]
    names = sorted(t.get("name") or t["function"]["name"] for t in server.received[0].tools)
    assert names == ["build", "list_files", "read_file", "run_tests", "submit", "write_file"]
    assert "write_file" in server.received[0].system  # told to work with the tools


def hostile_tool_user(request: Received) -> Answer:
    """Every way to get a tool call wrong, then nothing: it never submits."""
    if request.history:
        return Answer("I am done, I think.")
    return Answer(
        "",
        [
            ("rm_rf", {}),
            ("write_file", "{not json"),
            ("write_file", {"path": "../../outside.cpp", "content": "x"}),
            ("write_file", {"path": "/etc/evil", "content": "x"}),
            ("write_file", {"path": "big.cpp", "content": "x" * (10 * 1024 * 1024)}),
            ("read_file", {"path": "nothing.cpp"}),
            ("read_skill_file", {"skill": "x", "path": "SKILL.md"}),
            ("write_file", {"path": "notes.txt", "content": 5}),
            ("run_tests", {}),
        ],
    )


def test_malformed_tool_calls_are_tool_errors_and_a_silent_model_ends_at_its_limit(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=hostile_tool_user) as server:
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{server.url}/v1",
            "--upskill-turns=3",
            "--upskill-max-tokens=10000000",
        )
    result.assert_outcomes(failed=1)
    result.stdout.no_fnmatch_line("*Traceback*")
    (sample,) = samples(pytester)
    assert (sample["stage"], sample["turns"]) == ("extract", 3)
    assert sample["reason"] == "turn limit 3 reached: the model wrote no file"
    results = [m for m in server.received[1].history if m["role"] == "tool"]
    said = [m["content"] for m in results]
    assert len(said) == 9
    assert all(text.startswith("error: ") for text in said), said
    assert "there is no tool 'rm_rf'" in said[0]
    assert "you wrote '{not json'" in said[1]
    assert "leaves the project" in said[2]
    assert "is absolute" in said[3]
    assert "a file may hold 1048576" in said[4]
    assert "no file 'nothing.cpp'" in said[5]
    assert "there is no tool 'read_skill_file'" in said[6]
    assert "content must be a string" in said[7]
    assert "the project has no files" in said[8]
    # The model that answered with words only is told to use the tools.
    assert "Use the tools" in json.dumps(server.received[2].history[-1])
    assert not list(pytester.path.parent.rglob("outside.cpp"))


def reads_then_writes(request: Received) -> Answer:
    """With a skill on offer, reads SKILL.md first; then writes the project and tests it."""
    if "<available_skills>" in request.system and not request.history:
        return Answer("", [("read_skill_file", {"skill": "cpu-kernels", "path": "SKILL.md"})])
    return Answer("", [*writes(GOOD), ("run_tests", {})])


def test_a_disclosed_skill_is_read_through_its_tool_and_the_load_rate_reported(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    args = [f"--upskill-skill={SKILL}", "--upskill-skill-mode=disclose", "--upskill-turns=3"]
    args += ["--upskill-cassette-dir=c"]
    with ModelServer(answer=reads_then_writes) as server:
        model = f"--upskill-model=openai:m@{server.url}/v1"
        serial = run(pytester, upskill_args, model, *args)
    serial.assert_outcomes(passed=2)
    first = samples(pytester)
    by_condition = {s["condition"]: s for s in first}
    assert by_condition["cpu-kernels"]["skill_loaded_at_turn"] == 1
    assert by_condition["cpu-kernels"]["passed_at_turn"] == 2
    assert by_condition["baseline"]["skill_loaded_at_turn"] is None
    rows = json.loads((pytester.path / "r.json").read_text())["summary"]
    assert {r["condition"]: r["skill_load_rate"] for r in rows} == {
        "baseline": 0.0,
        "cpu-kernels": 1.0,
    }
    # The skill's own text reached the model as the tool's result.
    results = [m for r in server.received for m in r.history if m["role"] == "tool"]
    skill_text = (SKILL / "SKILL.md").read_text().strip()[-200:]
    assert any(skill_text in m["content"] for m in results)
    # Replayed under xdist with the server gone: the same outcomes, turn by turn.
    parallel = run(pytester, upskill_args, model, *args, "--upskill-record=none", "-n", "2")
    parallel.assert_outcomes(passed=2)

    def turns(records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            s["condition"]: [(t["stage"], t["outcome"], t["tool_calls"]) for t in s["per_turn"]]
            for s in records
        }

    assert turns(samples(pytester)) == turns(first)


@pytest.mark.parametrize("agent", ["tools", "feedback"])
@pytest.mark.parametrize("skill_mode", ["preload", "disclose"])
def test_baseline_and_skill_get_the_same_prompt_tools_and_limits_but_the_skill(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    agent: str,
    skill_mode: str,
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=lambda request: render_reply(GOOD)) as server:
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{server.url}/v1",
            f"--upskill-skill={SKILL}",
            f"--upskill-agent={agent}",
            f"--upskill-skill-mode={skill_mode}",
            "--upskill-turns=2",
        )
    assert result.ret in (0, 1)
    first = [r for r in server.received if not r.history]
    baseline, skilled = sorted(first, key=lambda r: len(r.system))
    assert skilled.system.startswith(baseline.system)
    assert skilled.system != baseline.system
    assert (skilled.user, skilled.tools) == (baseline.user, baseline.tools)
    assert bool(baseline.tools) == (agent == "tools")
    offered = {t["function"]["name"] for t in baseline.tools}
    assert ("read_skill_file" in offered) == (agent == "tools" and skill_mode == "disclose")
    assert {k: v for k, v in skilled.body.items() if k not in ("messages", "tools")} == {
        k: v for k, v in baseline.body.items() if k not in ("messages", "tools")
    }


@pytest.mark.parametrize(
    ("args", "reason", "turns"),
    [
        (["--upskill-turns=3"], "turn limit 3 reached: *flaot*", 3),
        (["--upskill-max-total-tokens=100"], "token limit 100 reached (* spent): *flaot*", 1),
        (["--upskill-max-cost=0.5"], "cost limit $0.5 reached ($* spent): *flaot*", 1),
        (["--upskill-max-sample-time=0.001"], "time limit 0.001 s reached (* s spent): *flaot*", 1),
    ],
    ids=["turns", "tokens", "cost", "time"],
)
def test_a_model_that_never_fixes_it_stops_at_its_limit(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    args: list[str],
    reason: str,
    turns: int,
) -> None:
    """It fails where its last turn ended, naming the limit; never an error."""
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    pytester.makeini("[pytest]\nupskill_prices =\n    openai:m = 1000000 0\n")
    with ModelServer(answer=lambda request: render_reply(BROKEN)) as server:
        model = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(
            pytester, upskill_args, model, "--upskill-agent=feedback", "--upskill-turns=5", *args
        )
    result.assert_outcomes(failed=1)
    (sample,) = samples(pytester)
    assert (sample["outcome"], sample["stage"], sample["turns"]) == ("failed", "build", turns)
    assert fnmatch.fnmatch(sample["reason"], reason), sample["reason"]
    assert sample["passed_at_turn"] is None
    assert len(server.received) == turns
    result.stdout.fnmatch_lines([f"*upskill [[]build[]] failed: {reason}"])


def test_a_turn_runs_at_most_64_tool_calls(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    """Each call may build: a turn of a thousand calls would build a thousand times."""
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    calls: list[tuple[str, dict[str, Any] | str]] = [("list_files", {})] * 70
    with ModelServer(answer=lambda request: Answer("", calls)) as server:
        result = run(
            pytester, upskill_args, f"--upskill-model=openai:m@{server.url}/v1", "--upskill-turns=2"
        )
    result.assert_outcomes(failed=1)
    said = [m["content"] for m in server.received[1].history if m["role"] == "tool"]
    assert len(said) == 70
    assert said[:64] == ["(no files yet)"] * 64
    assert all(text.startswith("error: at most 64 tool calls a turn") for text in said[64:]), said[
        64
    ]


def test_a_provider_failure_mid_conversation_is_an_error_not_a_failure(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    """The first turn is answered; the second outlives its retries (5 x HTTP 500)."""
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    faults = [200, 500, 500, 500, 500, 500]
    with ModelServer(answer=lambda request: render_reply(BROKEN), faults=faults) as server:
        model = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(pytester, upskill_args, model, "--upskill-agent=feedback", "--upskill-turns=3")
    result.assert_outcomes(errors=1)
    (sample,) = samples(pytester)
    assert (sample["outcome"], sample["stage"], sample["turns"]) == ("error", "generate", 2)
    assert "answered HTTP 500 after 4 retries" in sample["reason"]
    assert [t["stage"] for t in sample["per_turn"]] == ["build", "generate"]
    assert len(server.received) == 6
