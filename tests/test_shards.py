"""Shards of a campaign (`--upskill-shard=I/N`), each a real pytest session, and their reports
merged (`python -m pytest_upskill merge`) into the report of one run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pr_campaign import pr_campaign

PLAIN = "def test_plain_a(): pass\ndef test_plain_b(): pass\ndef test_plain_c(): pass\n"


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _ids(path: Path) -> set[str]:
    return {sample["nodeid"] for sample in _report(path)["samples"]}


def _merge(pytester: pytest.Pytester, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest_upskill", "merge", *args]
    return subprocess.run(command, cwd=pytester.path, capture_output=True, text=True, check=False)


def test_shards_share_out_the_samples_and_merge_into_one_runs_report(
    pytester: pytest.Pytester, upskill_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_plain=PLAIN)
    with pr_campaign(pytester, monkeypatch, upskill_args) as (server, common):
        asked = []
        for index in (1, 2, 1):
            server.received.clear()
            shard = pytester.runpytest(
                f"--upskill-shard={index}/2", "--upskill-record=off",
                f"--upskill-report=off{index}.json", *common,
            )  # fmt: skip
            shard.stdout.fnmatch_lines(
                ["upskill: shard * of 2: the samples in node id order, dealt out to the 2 *"]
            )
            outcomes = shard.parseoutcomes()
            asked.append(len(server.received))
            # Six samples each; the three plain tests go two to one shard, one to the other.
            assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 6 + (3 - index)
            assert outcomes["deselected"] == 9 - (3 - index)
        assert asked == [6, 6, 6]  # each shard asks only for its own samples' replies
        # The same replies for the whole run and the shards: recorded once, then replayed.
        pytester.runpytest(*common).assert_outcomes(passed=9, failed=6)
        replay = ["--upskill-record=none", *common]
        pytester.runpytest(*replay, "--upskill-report=whole.json")
        for index in (1, 2):
            pytester.runpytest(
                *replay, f"--upskill-shard={index}/2", f"--upskill-report={index}.json"
            )
    one, two = _ids(pytester.path / "1.json"), _ids(pytester.path / "2.json")
    assert one == _ids(pytester.path / "off1.json")  # the same share every time
    assert not one & two
    assert one | two == _ids(pytester.path / "whole.json")
    # Every test's samples are spread over both shards, each with both conditions.
    for ids in (one, two):
        assert {(i.split("[")[0], "baseline" in i) for i in ids} == {
            (f"skills/write-good-pr/skill_meta.json::test_write_good_pr_{n}", b)
            for n in (0, 1)
            for b in (True, False)
        }
    merged = _merge(pytester, "1.json", "2.json", "--report", "merged.json")
    assert merged.returncode == 0, merged.stderr
    whole, merged_report = (
        _report(pytester.path / "whole.json"),
        _report(pytester.path / "merged.json"),
    )
    for table in ("summary", "lift", "tests", "comparisons"):
        assert merged_report[table] == whole[table], table


@pytest.mark.parametrize("value", ["0/2", "3/2", "1/0", "a/2", "2", "1/2/3", ""])
def test_a_shard_that_is_not_one_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile(test_plain=PLAIN)
    result = pytester.runpytest("--upskill-model=oracle", f"--upskill-shard={value}")
    if value:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--upskill-shard: expected I/N with 1 <= I <= N*"])
    else:  # empty: no shard, the whole session
        result.assert_outcomes(passed=3)
