"""A campaign that goes on from an interrupted run (`--upskill-resume=REPORT`): only the missing
samples are asked for, and the report is the whole campaign's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pr_campaign import pr_campaign
from test_upskill_cases import PR_CASES, write_good_pr


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_a_resumed_run_asks_only_for_the_missing_samples(
    pytester: pytest.Pytester,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    workers: list[str],
) -> None:
    with pr_campaign(pytester, monkeypatch, upskill_args) as (server, common):
        # The whole campaign in one run, for reference (its replies recorded for the others).
        whole = pytester.runpytest("--upskill-report=whole.json", *common)
        whole.assert_outcomes(passed=6, failed=6)
        replay = ["--upskill-record=none", *common]
        # Cut short: it stops at the fourth failure, seven samples in (three of a test's
        # baseline samples fail, its skill samples pass, the next test's first fails).
        cut = pytester.runpytest(
            *replay, "-p", "no:xdist", "--maxfail=4", "--upskill-report=cut.json"
        )
        cut.assert_outcomes(passed=3, failed=4)
        done = {sample["nodeid"] for sample in _report(pytester.path / "cut.json")["samples"]}
        assert len(done) == 7
        server.received.clear()
        # Its samples that are missing, asked for afresh, in a run that records nothing.
        resumed = pytester.runpytest(
            "--upskill-record=off", "--upskill-resume=cut.json",
            "--upskill-report=resumed.json", *workers, *common,
        )  # fmt: skip
        # (xdist's controller does not count what its workers deselect)
        resumed.assert_outcomes(passed=3, failed=2, deselected=0 if workers else 7)
        resumed.stdout.fnmatch_lines(
            ["upskill: going on from *cut.json: 7 sample(s) that passed or failed there are not *"]
        )
    first = _report(pytester.path / "whole.json")
    by_id = {sample["nodeid"]: sample for sample in first["samples"]}
    missing = [by_id[nodeid] for nodeid in by_id if nodeid not in done]
    # Exactly the requests of the missing samples, each once.
    asked = sorted((r.user, "write-good-pr" in r.system) for r in server.received)
    assert asked == sorted((_case_input(s["test"]), s["condition"] != "baseline") for s in missing)
    report = _report(pytester.path / "resumed.json")
    assert {s["nodeid"] for s in report["samples"]} == set(by_id)
    for table in ("summary", "lift", "tests", "comparisons"):
        assert [_counts(row) for row in report[table]] == [_counts(row) for row in first[table]]


def _case_input(test: str) -> str:
    case = PR_CASES[int(test.rpartition("_")[2])]
    return str(case["input"])


def _counts(row: dict[str, Any]) -> dict[str, Any]:
    """A table row without what the replies' timing decides."""
    return {key: value for key, value in row.items() if "latency" not in key and "_s" not in key}


def test_resuming_from_another_campaign_is_refused(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    skill = write_good_pr(pytester.path, PR_CASES)
    common = ["--upskill-model=oracle", "--upskill-skill=skills/write-good-pr", *upskill_args]
    pytester.runpytest(*common, "--upskill-report=first.json").assert_outcomes(passed=4)
    (skill / "SKILL.md").write_text((skill / "SKILL.md").read_text() + "\nAlways say LGTM.\n")
    result = pytester.runpytest(*common, "--upskill-resume=first.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--upskill-resume: *first.json is of another campaign: skill write-good-pr (the hash*"]
    )
    (pytester.path / "bad.json").write_text('{"schema": "pytest-upskill/1", "samples": 3}')
    result = pytester.runpytest(*common, "--upskill-resume=bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--upskill-resume: *bad.json: is not a valid report*"])


def test_a_resumed_report_chooses_no_file_and_no_sample_of_another_test(
    pytester: pytest.Pytester, upskill_args: list[str], tmp_path: Path
) -> None:
    write_good_pr(pytester.path, PR_CASES)
    common = ["--upskill-model=oracle", "--upskill-skill=skills/write-good-pr", *upskill_args]
    pytester.runpytest(*common, "--upskill-report=first.json").assert_outcomes(passed=4)
    # The victim's files, which a forged report points every sample's folders at.
    victim = tmp_path / "victim"
    (victim / "project").mkdir(parents=True)
    (victim / "project" / "id_rsa").write_text("SECRET-KEY-MATERIAL")
    (victim / "prompt.md").write_text("SECRET-PROMPT")
    (victim / "build.log").write_text("SECRET-BUILD-LOG")
    report = _report(pytester.path / "first.json")
    for sample in report["samples"]:
        sample.update(directory=str(victim), build_directory=str(victim))
    gone = {**report["samples"][0], "nodeid": "test_gone.py::test_gone[oracle-baseline-0]"}
    report["samples"].append(gone)
    (pytester.path / "first.json").write_text(json.dumps(report))
    result = pytester.runpytest(
        *common, "--upskill-resume=first.json", "--upskill-report=again.json",
        "--upskill-html=again.html",
    )  # fmt: skip
    # Nothing left to run: the campaign is complete, which is no failure.
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(deselected=4)
    html = (pytester.path / "again.html").read_text()
    assert "SECRET" not in html
    again = _report(pytester.path / "again.json")
    assert len(again["samples"]) == 4  # the sample of a test this run does not have is left out
    assert all(sample["directory"] == "" for sample in again["samples"])
