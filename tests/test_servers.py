"""Model servers as users run them: cut replies, a server checked before the run, request
options, repeated replies. The real SDKs against the loopback server (`model_server`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from model_server import ModelServer, loopback_model
from test_models import CONCURRENT_TEST, good_reply, run, samples

from conftest import ROW_SOFTMAX_TEST


def summary(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((pytester.path / "r.json").read_text())["summary"]
    return rows


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_reply_cut_at_the_token_limit_says_so(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
) -> None:
    """The project's files are in the reply's second half: cut at 100 tokens, there are none,
    and the failure no longer reads like any reply without files."""
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=lambda r: "Here it is.\n" * 40 + good_reply(r)) as server:
        model = loopback_model(provider, server, monkeypatch)
        result = run(pytester, upskill_args, f"--upskill-model={model}", "--upskill-max-tokens=100")
    result.assert_outcomes(failed=1)
    (sample,) = samples(pytester)
    assert sample["truncated"] is True
    assert (sample["stage"], sample["outcome"]) == ("extract", "failed")
    assert sample["reason"].startswith("reply cut at --upskill-max-tokens=100: ")
    result.stdout.fnmatch_lines(
        ["*upskill [[]extract[]] failed: reply cut at --upskill-max-tokens=100: *"]
    )
    assert summary(pytester)[0]["truncated"] == 1


def test_a_dead_server_is_one_line_before_the_run_and_no_wait(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    with ModelServer() as server:
        url = f"{server.url}/v1"  # closed once the server stops
    pytester.makepyfile(CONCURRENT_TEST)
    started = time.monotonic()
    result = run(pytester, upskill_args, f"--upskill-model=openai:m@{url}", "--upskill-samples=6")
    result.assert_outcomes(errors=6)
    lines = [line for line in result.outlines if line.startswith("upskill: openai:m")]
    assert lines == [
        f"upskill: openai:m: cannot reach {url}/: [Errno 111] Connection refused: its samples "
        "without a recorded reply end as errors"
    ]
    for sample in samples(pytester):
        assert sample["reason"].endswith("(checked before the run)")
    assert time.monotonic() - started < 30  # no sample waits on its own retries


def test_a_model_the_server_does_not_list_is_a_warning_naming_what_it_offers(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    pytester.makepyfile(CONCURRENT_TEST)
    with ModelServer(answer=lambda r: "a reply", models=["smollm2-135m", "qwen3-8b"]) as server:
        result = run(pytester, upskill_args, f"--upskill-model=openai:smollm2@{server.url}/v1")
        listed = run(pytester, upskill_args, f"--upskill-model=openai:qwen3-8b@{server.url}/v1")
    result.assert_outcomes(passed=1)  # a server that echoes any name still answers
    result.stdout.fnmatch_lines(
        [
            f"upskill: openai:smollm2: {server.url}/v1/ lists no model 'smollm2'; it offers "
            "smollm2-135m, qwen3-8b"
        ]
    )
    listed.stdout.no_fnmatch_line("*lists no model*")


def test_request_options_reach_the_request_and_the_cassette_key(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    pytester.makepyfile(CONCURRENT_TEST)
    with ModelServer(answer=lambda r: "a reply") as server:
        model = f"--upskill-model=openai:m@{server.url}/v1"
        params = ["--upskill-model-param=seed=7", '--upskill-model-param=stop=["</s>"]']
        run(pytester, upskill_args, model, *params).assert_outcomes(passed=1)
        run(pytester, upskill_args, model, *params).assert_outcomes(passed=1)  # replayed
        other = ["--upskill-model-param=seed=8", '--upskill-model-param=stop=["</s>"]']
        run(pytester, upskill_args, model, *other).assert_outcomes(passed=1)
    assert [(r.body["seed"], r.body["stop"]) for r in server.received] == [
        (7, ["</s>"]),
        (8, ["</s>"]),
    ]
    cassettes = sorted((pytester.path / ".upskill" / "cassettes").glob("*.json"))
    keys = [json.loads(path.read_text())["request"]["params"] for path in cassettes]
    assert sorted(k["seed"] for k in keys) == [7, 8]


def test_the_request_timeout_bounds_each_request(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    pytester.makepyfile(CONCURRENT_TEST)
    with ModelServer(answer=lambda r: "a reply", latency_s=5) as server:
        started = time.monotonic()
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{server.url}/v1",
            "--upskill-request-timeout=0.5",
        )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*openai:m: * did not answer in time, 4 retries included*"])
    assert len(server.received) == 5  # the first try and 4 retries, each cut at 0.5 s
    assert time.monotonic() - started < 25  # not the 5 s each would have taken


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("seed", "--upskill-model-param: expected KEY=VALUE, got 'seed'"),
        ("max_tokens=5", "--upskill-model-param: max_tokens is set by --upskill-max-tokens"),
    ],
)
def test_a_bad_model_param_is_a_usage_error(
    pytester: pytest.Pytester, param: str, message: str
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--upskill-model=oracle", f"--upskill-model-param={param}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_repeated_replies_are_counted_and_temperature_0_is_named(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    pytester.makepyfile(CONCURRENT_TEST)
    with ModelServer(answer=lambda r: "a reply") as server:
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{server.url}/v1",
            "--upskill-samples=3",
            "--upskill-temperature=0",
        )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["upskill: temperature 0: the 3 samples of a test may repeat one reply; *"]
    )
    assert summary(pytester)[0]["duplicate_replies"] == 2
    result.stdout.fnmatch_lines(
        [
            "openai:m baseline: 2 sample(s) repeat another sample's reply to the same test word "
            "for word (temperature 0, a seed, a server's cache): they are not independent draws"
        ]
    )


@pytest.mark.parametrize("serial", [True, False], ids=["one-slot", "parallel"])
def test_a_server_that_generates_one_reply_at_a_time_is_named(
    pytester: pytest.Pytester, upskill_args: list[str], serial: bool
) -> None:
    """Four requests open at once on a one-slot server: each waits for the one before, so its
    latency is mostly queue; a server that generates them together is not named."""
    pytester.makepyfile(CONCURRENT_TEST)
    with ModelServer(answer=lambda r: "a reply", serial=serial, chunk_delay_s=0.1) as server:
        result = run(
            pytester,
            upskill_args,
            f"--upskill-model=openai:m@{server.url}/v1",
            "--upskill-samples=4",
            "--upskill-concurrency=4",
        )
    result.assert_outcomes(passed=4)
    line = "openai:m: its server generated one reply at a time while up to 4 requests waited*"
    if serial:
        result.stdout.fnmatch_lines([line])
        latencies = sorted(s["latency_s"] for s in samples(pytester))
        generations = [s["generation_s"] for s in samples(pytester)]
        assert latencies[-1] > 3 * max(generations)  # the last waited for three others
    else:
        result.stdout.no_fnmatch_line(line)
