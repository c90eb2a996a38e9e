"""Real models: the anthropic and openai SDK clients against a server on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from model_server import ModelServer, Received, tokens

from conftest import EXAMPLES, INTERRUPTIBLE_PYTEST, ROW_SOFTMAX_TEST
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.extract import render_reply

SKILL = EXAMPLES / "skills" / "cpu-kernels"
ANTHROPIC_KEY = "sk-ant-loopback-secret"
OPENAI_KEY = "sk-openai-loopback-secret"


def good_reply(request: Received) -> str:
    """The known-good row softmax project, as a model would write it."""
    return render_reply(read_project(EXAMPLES / "solutions" / "row_softmax"))


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)


def run(pytester: pytest.Pytester, upskill_args: list[str], *args: str) -> pytest.RunResult:
    return pytester.runpytest("--upskill-report=r.json", *upskill_args, *args)


def samples(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    parsed: list[dict[str, Any]] = json.loads((pytester.path / "r.json").read_text())["samples"]
    return parsed


def test_each_provider_sends_the_task_and_its_replies_replay_without_a_server(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    models = ["anthropic:claude-loopback", "openai:gpt-loopback"]
    with ModelServer(answer=good_reply) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        models.append(f"openai:org/local-gguf:Q4_0@{server.url}/v1")
        args = [f"--upskill-model={model}" for model in models]
        args += [f"--upskill-skill={SKILL}", "--upskill-temperature=0.3"]
        args += ["--upskill-max-tokens=5000", "--upskill-cassette-dir=cassettes"]
        recorded = run(pytester, upskill_args, *args)
    recorded.assert_outcomes(passed=6)
    recorded.stdout.fnmatch_lines(
        ["upskill: replies replayed from cassettes, the missing ones recorded (*cassettes)"]
    )
    first = samples(pytester)

    # What each SDK sent: the model, the prompt with and without the skill, the settings.
    by_model: dict[str, list[Received]] = {}
    for request in server.received:
        by_model.setdefault(request.body["model"], []).append(request)
    assert sorted(by_model) == ["claude-loopback", "gpt-loopback", "org/local-gguf:Q4_0"]
    skill_text = (SKILL / "SKILL.md").read_text().split("---")[2].strip()[:80]
    for model, requests in by_model.items():
        baseline, with_skill = sorted((r.system for r in requests), key=len)
        assert skill_text not in baseline
        assert with_skill.startswith(baseline)
        assert skill_text in with_skill
        for request in requests:
            # Anthropic's API takes no sampling parameters since its 2026-10-21 version.
            expected = None if model == "claude-loopback" else 0.3
            assert request.body.get("temperature") == expected
            assert request.body["max_tokens"] == 5000  # compatible servers know max_tokens
            assert "Softmax of each row" in request.user
    claude = by_model["claude-loopback"][0]
    assert claude.path == "/v1/messages"
    # Both streamed: the time to the first token and the generation after it are known.
    assert claude.body["stream"] is True
    gpt = by_model["gpt-loopback"][0]
    assert (gpt.body["stream"], gpt.body["stream_options"]) == (True, {"include_usage": True})
    assert claude.headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"
    assert by_model["gpt-loopback"][0].headers["authorization"] == f"Bearer {OPENAI_KEY}"

    # Usage as the server counted it, the settings, no price for unknown models.
    for sample in first:
        assert sample["usage"]["output_tokens"] == tokens(good_reply(claude))
        assert sample["usage"]["input_tokens"] > 0
        temperature = None if sample["model"].startswith("anthropic:") else 0.3
        assert (sample["temperature"], sample["max_tokens"]) == (temperature, 5000)
        assert (sample["cached"], sample["cost_usd"]) == (False, None)
        assert 0 < sample["first_token_s"] <= sample["latency_s"]
        assert 0 <= sample["generation_s"] <= sample["latency_s"] - sample["first_token_s"] + 1e-3
        assert sample["truncated"] is False

    # One readable file per reply, and not one secret in them.
    cassettes = sorted((pytester.path / "cassettes").glob("*.json"))
    assert len(cassettes) == 6
    for cassette in cassettes:
        text = cassette.read_text()
        assert ANTHROPIC_KEY not in text
        assert OPENAI_KEY not in text
        assert "authorization" not in text.lower()
        assert json.loads(text)["reply"]["text"] == good_reply(claude)

    # Replay: the server is gone, and nothing asks for it.
    replayed = run(pytester, upskill_args, *args, "--upskill-record=none")
    replayed.assert_outcomes(passed=6)
    replayed.stdout.fnmatch_lines(["upskill: replies replayed from cassettes only (*cassettes)"])
    second = samples(pytester)
    assert [s["outcome"] for s in second] == [s["outcome"] for s in first]
    assert all(s["cached"] for s in second)
    assert [s["usage"] for s in second] == [s["usage"] for s in first]
    # The recorded times, replayed.
    for again, asked in zip(second, first, strict=True):
        assert again["generation_s"] == pytest.approx(asked["generation_s"], abs=1e-3)


def test_one_model_on_two_servers_is_two_rows(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    """Two specs that differ only by base URL were one label, one test id, one row."""
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=good_reply) as good, ModelServer() as bad:
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{good.url}/v1",
            f"--upskill-model=openai:m@{bad.url}/v1",
        )
    result.assert_outcomes(passed=1, failed=1)
    assert (len(good.received), len(bad.received)) == (1, 1)
    rows = json.loads((pytester.path / "r.json").read_text())["summary"]
    by_model = {row["model"]: (row["n"], row["passed"]) for row in rows}
    good_host, bad_host = (server.url.removeprefix("http://") for server in (good, bad))
    assert by_model == {f"openai:m@{good_host}": (1, 1), f"openai:m@{bad_host}": (1, 0)}
    result.stdout.fnmatch_lines([f"FAILED *test_row_softmax?openai:m@{bad_host}-baseline-0?*"])
    result.stdout.fnmatch_lines(
        [f"upskill: models openai:m@{good.url}/v1, openai:m@{bad.url}/v1;*"]
    )


def test_a_label_clash_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(
        "--upskill-model=openai:m@http://127.0.0.1:1/v1",
        "--upskill-model=openai:m@http://127.0.0.1:1/v2",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --upskill-model: openai:m@http://127.0.0.1:1/v1 and openai:m@http://127.0.0.1:1/v2 "
            "would both be labelled 'openai:m@127.0.0.1:1': name them apart, as NAME=SPEC"
        ]
    )


def test_a_password_in_a_base_url_stays_out_of_headers_cassettes_and_errors(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    secret = "s3cret-pw-in-url"
    with ModelServer(answer=good_reply) as server:
        url = server.url.replace("http://", f"http://user:{secret}@")
        result = run(pytester, upskill_args, f"--upskill-model=openai:m@{url}/v1")
    result.assert_outcomes(passed=1)
    assert server.received[0].headers["authorization"]  # the SDK sent what the URL said
    dead = run(pytester, upskill_args, f"--upskill-model=openai:q@{url}/v1")  # server gone
    dead.assert_outcomes(errors=1)
    dead.stdout.fnmatch_lines([f"*openai:q: cannot reach {server.url}/v1/*"])
    written = [path.read_text() for path in pytester.path.rglob("*.json")]
    for text in [result.stdout.str(), dead.stdout.str(), *written]:
        assert secret not in text


def test_rate_limits_are_retried_and_the_sample_passes(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str], keys: None
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=good_reply, faults=[429, 429]) as server:
        result = run(pytester, upskill_args, f"--upskill-model=openai:m@{server.url}/v1")
    result.assert_outcomes(passed=1)
    assert len(server.received) == 3


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_server_that_stays_down_is_an_error_out_of_the_pass_rate(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    keys: None,
    workers: list[str],
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(always=500) as server:
        model = f"--upskill-model=openai:m@{server.url}/v1"
        result = run(pytester, upskill_args, model, *workers)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"upskill [[]generate[]] error: openai:m: {server.url}/v1/ answered HTTP 500 after 4 "
            "retries: *"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.fnmatch_lines(
        [
            "openai:m*baseline*0/0*-*-*0*0*1*0*-",
            "1 sample(s) ended as errors (the harness's or the provider's, not the model's): "
            "left out of every rate",
        ]
    )
    (sample,) = samples(pytester)
    assert (sample["outcome"], sample["stage"]) == ("error", "generate")
    # The first try and 4 retries, once: a worker that finds the failure does not ask again.
    assert len(server.received) == 5
    assert not list((pytester.path / ".upskill" / "cassettes").glob("*.json"))


def test_an_unreachable_server_is_an_error(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    with ModelServer() as server:
        url = f"{server.url}/v1"  # a port that is closed once the server stops
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = run(pytester, upskill_args, f"--upskill-model=openai:m@{url}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"upskill [[]generate[]] error: openai:m: cannot reach {url}/: *"])


def test_a_missing_key_is_one_message_and_errors_not_tracebacks(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = run(
        pytester, upskill_args, "--upskill-model=anthropic:claude-x", "--upskill-samples=3"
    )
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "upskill: anthropic:claude-x: ANTHROPIC_API_KEY is not set: export it *; its samples "
            "without a recorded reply end as errors",
        ]
    )
    result.stdout.fnmatch_lines(
        ["upskill [[]generate[]] error: anthropic:claude-x: ANTHROPIC_API_KEY is not set*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert {s["outcome"] for s in samples(pytester)} == {"error"}


def test_replay_only_without_a_recording_says_how_to_record(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str], keys: None
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = run(
        pytester, upskill_args, "--upskill-model=anthropic:claude-x", "--upskill-record=none"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "upskill [[]generate[]] error: anthropic:claude-x: no recorded reply (anthropic_claude-x-*.json) "
            "and --upskill-record=none: record it with --upskill-record=new"
        ]
    )


CONCURRENT_TEST = """
import pytest

@pytest.mark.upskill("Anything.", name="anything", backend="cpu")
def test_reply(upskill_sample):
    assert upskill_sample.reply == "a reply"
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_replies_are_asked_for_concurrently_and_each_once(
    pytester: pytest.Pytester, upskill_args: list[str], workers: list[str]
) -> None:
    pytester.makepyfile(CONCURRENT_TEST)
    with ModelServer(answer=lambda request: "a reply", latency_s=0.3) as server:
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{server.url}/v1",
            "--upskill-samples=12",
            "--upskill-concurrency=3",
            "--upskill-record=off",
            *workers,
        )
    result.assert_outcomes(passed=12)
    assert len(server.received) == 12  # each reply asked for once, whoever runs its test
    processes = 2 if workers else 1
    assert 2 <= server.most_in_flight <= 3 * processes
    assert not (pytester.path / ".upskill" / "cassettes").exists()  # off: nothing recorded
    if not workers:
        result.stdout.fnmatch_lines(["upskill: asking the models for 12 replies, 3 at a time"])


FAST_TEST = CONCURRENT_TEST.replace("Anything.", "Fast.").replace("anything", "fast")
SLOW_TEST = CONCURRENT_TEST.replace("Anything.", "Slow.").replace("anything", "slow") + (
    "    import time; time.sleep(0.3)\n"
)


def test_a_worker_that_ends_early_leaves_no_reply_to_be_asked_twice(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    """One worker runs the fast file and ends while replies it is asking are still needed by the
    other: it finishes them, and the other asks for what it left. Replies written by a worker of
    this session are fresh, not cached."""
    pytester.makepyfile(test_fast=FAST_TEST, test_slow=SLOW_TEST)
    with ModelServer(answer=lambda request: "a reply", latency_s=1.0) as server:
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{server.url}/v1",
            "--upskill-samples=6",
            "--upskill-concurrency=3",
            "--upskill-cassette-dir=cassettes",
            "-n",
            "2",
            "--dist=loadfile",
        )
    result.assert_outcomes(passed=12)
    assert len(server.received) == 12  # was 14: two cut in flight, then asked again
    assert not [s["nodeid"] for s in samples(pytester) if s["cached"]]
    # The next session replays them all.
    again = run(
        pytester,
        upskill_args,
        f"--upskill-model=openai:m@{server.url}/v1",
        "--upskill-samples=6",
        "--upskill-cassette-dir=cassettes",
        "-n",
        "2",
    )
    again.assert_outcomes(passed=12)
    assert all(s["cached"] for s in samples(pytester))


def test_ctrl_c_while_a_reply_is_on_its_way_ends_the_session_at_once(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    pytester.makepyfile(CONCURRENT_TEST)
    with ModelServer(answer=lambda request: "a reply", latency_s=60) as server:
        process = subprocess.Popen(
            [
                *INTERRUPTIBLE_PYTEST,
                f"--upskill-model=openai:m@{server.url}/v1",
                *upskill_args,
            ],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not server.received and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.received, "the session never asked for its reply"
            interrupted = time.monotonic()
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=50)  # not the 60 s the reply would take
        finally:  # a session that did not end is not left to the next tests
            process.kill()
            process.communicate()
    assert time.monotonic() - interrupted < 30
    assert "KeyboardInterrupt" in output


def test_prices_from_ini_cost_each_sample(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    pytester.makepyfile(CONCURRENT_TEST)
    pytester.makeini("[pytest]\nupskill_prices =\n    openai:m = 2.0 8.0\n")
    with ModelServer(answer=lambda request: "a reply") as server:
        result = run(pytester, upskill_args, f"--upskill-model=openai:m@{server.url}/v1")
    result.assert_outcomes(passed=1)
    (sample,) = samples(pytester)
    usage = sample["usage"]
    expected = (usage["input_tokens"] * 2.0 + usage["output_tokens"] * 8.0) / 1e6
    assert sample["cost_usd"] == pytest.approx(expected)
    assert sample["cost_usd"] > 0


def test_a_bad_price_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    pytester.makeini("[pytest]\nupskill_prices =\n    openai:m = cheap\n")
    result = pytester.runpytest("--upskill-model=oracle")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: upskill_prices: expected 'MODEL = INPUT OUTPUT'*"])
