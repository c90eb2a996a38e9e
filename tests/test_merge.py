"""`python -m pytest_upskill merge`: runs of a share of the samples each, merged, report what
one run over them all reports; runs that differ are refused, and so are hostile reports.

Every outcome is read from outside: the files the runs and the merge wrote, and the merge's
exit status and output."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

import pytest_upskill
from conftest import EXAMPLES

# Two tests, so the lift is over more than one; each fails some samples on purpose, so the
# rates are neither 0 nor 1 (the oracle's kernel itself is right).
SUITE = """
import pytest
import torch

TASK = "Softmax of each row of a 2-D float32 tensor. Expose row_softmax(x)."


def check(kernel, sample, failing):
    x = torch.randn(8, 33)
    torch.testing.assert_close(kernel.row_softmax(x), torch.softmax(x, dim=-1))
    assert (sample.condition, sample.index) not in failing, "a planted failure"


@pytest.mark.upskill(TASK, name="row_softmax", backend="cpu", reference="solutions/row_softmax")
def test_softmax(kernel, upskill_sample):
    check(kernel, upskill_sample, {("baseline", 1), ("baseline", 2)})


@pytest.mark.upskill(TASK, name="row_softmax", backend="cpu", reference="solutions/row_softmax")
def test_softmax_again(kernel, upskill_sample):
    check(kernel, upskill_sample, {("baseline", 2), ("cpu-kernels", 2)})
"""
# What the suite's 12 samples (2 tests x 2 conditions x 3) end in.
FAILED = 4
# Sample 1 of each condition, and the rest.
ONES = "baseline-1 or kernels-1"
NOT_ONES = f"not ({ONES})"
# Measured, so never equal between two runs.
TIMES = {"mean_latency_s", "mean_generation_s"}


@pytest.fixture
def campaign(pytester: pytest.Pytester, reference: Path, upskill_args: list[str]) -> list[str]:
    """The suite, its skill (a copy, to edit) and the arguments of each of its runs."""
    pytester.makepyfile(SUITE)
    skill = pytester.path / "skills" / "cpu-kernels"
    shutil.copytree(EXAMPLES / "skills" / "cpu-kernels", skill)
    return [
        "--upskill-model=oracle",
        f"--upskill-skill={skill}",
        "--upskill-samples=3",
        *upskill_args,
    ]


def run(pytester: pytest.Pytester, args: list[str], report: str, *more: str) -> None:
    """One session; it wrote `report`."""
    pytester.runpytest(*args, f"--upskill-report={report}", *more)
    assert (pytester.path / report).is_file()


def merge(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.run(sys.executable, "-m", "pytest_upskill", "merge", *args)


def read(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((pytester.path / name).read_text())
    return document


def untimed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in row.items() if key not in TIMES} for row in rows]


def one_line_error(result: pytest.RunResult) -> str:
    """The merge refused: exit 2, one short line on stderr, no traceback, nothing written."""
    assert result.ret == 2, result.outlines
    errors = [line for line in result.errlines if line.strip()]
    assert len(errors) == 1, errors
    assert "Traceback" not in errors[0]
    assert len(errors[0]) < 1000
    return errors[0]


def test_two_halves_merge_to_the_report_of_one_run(
    pytester: pytest.Pytester, campaign: list[str]
) -> None:
    run(pytester, campaign, "whole.json", "--junitxml=whole.xml")
    run(pytester, campaign, "a.json", "-k", NOT_ONES)
    run(pytester, campaign, "b.json", "-k", ONES)
    assert len(read(pytester, "a.json")["samples"]) == 8
    assert len(read(pytester, "b.json")["samples"]) == 4

    outputs = ["--report=merged.json", "--markdown=merged.md", "--html=merged.html"]
    result = merge(pytester, "a.json", "b.json", *outputs, "--junitxml=merged.xml")
    assert result.ret == 0, result.errlines
    assert not [line for line in result.errlines if line.strip()]
    whole, merged = read(pytester, "whole.json"), read(pytester, "merged.json")
    # What the whole run says of itself, for a merge to hold other runs to.
    assert whole["run"]["plugin_version"] == pytest_upskill.__version__
    assert whole["run"]["models"] == {"oracle": "oracle"}
    assert list(whole["run"]["skills"]) == ["cpu-kernels"]
    assert (whole["run"]["settings"]["samples"], whole["run"]["shard"]) == (3, None)
    prompts: dict[str, set[str]] = {}
    for sample in whole["samples"]:
        prompts.setdefault(sample["condition"], set()).add(sample["prompt_digest"])
    # One task text, so one prompt per condition; the skill's adds its block.
    assert [len(digests) for digests in prompts.values()] == [1, 1]
    assert prompts["baseline"] != prompts["cpu-kernels"]
    assert "" not in prompts["baseline"]
    assert merged["schema"] == "pytest-upskill/1"
    assert untimed(merged["summary"]) == untimed(whole["summary"])
    assert merged["lift"] == whole["lift"]
    assert untimed(merged["tests"]) == untimed(whole["tests"])
    assert merged["run"] == whole["run"]
    assert merged["run"]["shard"] is None
    assert sorted(s["nodeid"] for s in merged["samples"]) == sorted(
        s["nodeid"] for s in whole["samples"]
    )
    # The numbers themselves, counted here: 1/3 and 3/3, then 2/3 and 2/3.
    rates = {(r["condition"], r["passed"], r["n"]) for r in merged["summary"]}
    assert rates == {("baseline", 3, 6), ("cpu-kernels", 5, 6)}
    (lifted,) = merged["lift"]
    assert (lifted["skill"], lifted["lift"]) == ("cpu-kernels", pytest.approx(2 / 6))
    # The table the merge prints is the session's, and so is the Markdown's.
    result.stdout.fnmatch_lines(
        [
            "upskill merge: 2 reports, 12 samples",
            "model*condition*passed*rate*95% CI*",
            "oracle*baseline*3/6*50%*",
            "oracle*cpu-kernels*5/6*83%*",
            "upskill report: merged.json",
        ]
    )
    assert "| oracle | cpu-kernels | 5/6 | 83% |" in (pytester.path / "merged.md").read_text()
    html = (pytester.path / "merged.html").read_text()
    assert html.count('<details class="sample">') == 12
    assert "reply.md" not in html  # no file that a report names is read

    # JUnit XML: a test case per sample, named as pytest's junitxml named the whole run's.
    def cases(name: str) -> dict[tuple[str | None, str | None], ElementTree.Element]:
        root = ElementTree.parse(pytester.path / name).getroot()
        return {(case.get("classname"), case.get("name")): case for case in root.iter("testcase")}

    ours, pytests = cases("merged.xml"), cases("whole.xml")
    assert set(ours) == set(pytests)
    assert len(ours) == 12
    assert sum(case.find("failure") is not None for case in ours.values()) == FAILED
    suite = ElementTree.parse(pytester.path / "merged.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("12", "4", "0")
    for key, case in ours.items():
        failed = pytests[key].find("failure") is not None
        assert (case.find("failure") is not None) == failed, key
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        theirs = {p.get("name"): p.get("value") for p in pytests[key].iter("property")}
        assert properties == theirs
        assert properties["upskill_outcome"] == ("failed" if failed else "passed")

    # The gates hold the merged rates: the baseline's is not held, the skill's 83% is.
    low = merge(pytester, "a.json", "b.json", "--report=g.json", "--fail-under=0.9")
    assert low.ret == 1
    low.stdout.fnmatch_lines(
        ["upskill gate failed: oracle cpu-kernels: pass rate 83% *under --upskill-fail-under=0.9"]
    )
    assert merge(pytester, "a.json", "b.json", "--report=g.json", "--fail-under=0.8").ret == 0
    high = merge(pytester, "a.json", "b.json", "--report=g.json", "--min-lift=0.5")
    assert high.ret == 1
    high.stdout.fnmatch_lines(["upskill gate failed: oracle cpu-kernels: lift +33%*"])


def test_duplicates_and_missing_samples_are_said(
    pytester: pytest.Pytester, campaign: list[str]
) -> None:
    run(pytester, campaign, "a.json", "-k", "not kernels-1")
    run(pytester, campaign, "b.json", "-k", "kernels and not kernels-1")

    both = merge(pytester, "a.json", "b.json", "--report=m.json")
    assert both.ret == 0, both.errlines
    both.stdout.fnmatch_lines_random(
        [
            "upskill duplicate sample: *::test_softmax[[]oracle-cpu-kernels-0[]] is in a.json and "
            "b.json: kept the one of a.json (passed)",
            "upskill duplicate sample: *::test_softmax_again[[]oracle-cpu-kernels-2[]] is in "
            "a.json and b.json: kept the one of a.json (failed)",
            "upskill missing: *::test_softmax: oracle cpu-kernels sample 1 in no report",
            "upskill missing: *::test_softmax_again: oracle cpu-kernels sample 1 in no report",
        ]
    )
    assert len([line for line in both.outlines if "duplicate sample" in line]) == 4
    assert len([line for line in both.outlines if "upskill missing" in line]) == 2
    merged = read(pytester, "m.json")
    assert len(merged["samples"]) == 10  # each sample once
    assert len({s["nodeid"] for s in merged["samples"]}) == 10


def test_a_run_with_another_version_of_the_skill_is_refused(
    pytester: pytest.Pytester, campaign: list[str]
) -> None:
    run(pytester, campaign, "a.json", "-k", "kernels-0")
    skill_md = pytester.path / "skills" / "cpu-kernels" / "SKILL.md"
    skill_md.write_text(skill_md.read_text() + "\nPrefer vectorized loops.\n")
    run(pytester, campaign, "b.json", "-k", "kernels-1")

    reason = one_line_error(merge(pytester, "a.json", "b.json", "--report=m.json"))
    assert reason.startswith("pytest-upskill merge: b.json and a.json are not runs of one")
    assert "skill cpu-kernels" in reason
    assert not (pytester.path / "m.json").exists()


def test_a_test_asked_another_prompt_is_refused(
    pytester: pytest.Pytester, campaign: list[str]
) -> None:
    run(pytester, campaign, "a.json", "-k", "test_softmax and baseline-0")
    test_file = next(pytester.path.glob("test_*.py"))
    test_file.write_text(test_file.read_text().replace("Softmax of each", "Softmax over each"))
    run(pytester, campaign, "b.json", "-k", "test_softmax and baseline-1")

    reason = one_line_error(merge(pytester, "a.json", "b.json", "--report=m.json"))
    assert "the prompts differ" in reason
    assert "::test_softmax asked oracle (baseline) one prompt in a.json and another" in reason


SAMPLE = {
    "nodeid": "t.py::t[m-baseline-0]",
    "test": "t",
    "model": "m",
    "condition": "baseline",
    "sample": 0,
    "outcome": "passed",
    "stage": "check",
}
RUN: dict[str, Any] = {
    "plugin_version": "0.1.0",
    "models": {"m": "openai:m"},
    "skills": {},
    "settings": {
        "samples": 1,
        "baseline": True,
        "turns": 1,
        "agent": "auto",
        "skill_mode": "preload",
        "skill_references": "list",
        "binding": "kernel-builder",
        "temperature": None,
        "max_tokens": 16384,
        "max_total_tokens": None,
        "max_sample_s": None,
        "max_cost_usd": None,
        "model_params": {},
    },
    "shard": None,
}
HUGE = "x" * 5_000_000


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[1, 2]", "is not a pytest-upskill report (not a JSON object)"),
        ("[" * 100_000 + "]" * 100_000, "is not valid JSON: it nests too deep"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        ({"schema": "junit/2", "samples": []}, "its schema is junit/2, not pytest-upskill/1"),
        (
            {"schema": HUGE, "samples": []},
            "holds a string longer than 100,000 characters (at schema)",
        ),
        ({"schema": ["x" * 1000]}, 'its schema is ["xxxx'),
        (
            {"schema": "pytest-upskill/1", "samples": [{**SAMPLE, "turns": 10**20}]},
            "samples.0: a sample of 100,000,000,000,000,000,000 turns, more than 1,000",
        ),
        ({"schema": "pytest-upskill/1"}, "is not a valid report: samples: Field required"),
        (
            {"schema": "pytest-upskill/1", "samples": [{**SAMPLE, "sample": "zero"}]},
            "is not a valid report: samples.0.sample: Input should be a valid integer",
        ),
        (
            {"schema": "pytest-upskill/1", "samples": [{**SAMPLE, "outcome": "\x1b[2Jwon"}]},
            "samples.0.outcome: Input should be 'passed', 'failed', 'error' or 'skipped'",
        ),
        (
            {"schema": "pytest-upskill/1", "samples": [SAMPLE], "run": {**RUN, "models": []}},
            "run.models: Input should be a valid dictionary",
        ),
        (
            {"schema": "pytest-upskill/1", "samples": [{**SAMPLE, HUGE: 1, "reason": HUGE}]},
            "holds a string longer than 100,000 characters",
        ),
        (
            '{"schema": "pytest-upskill/1", "samples": [{"nodeid": "\\ud800"}]}',
            "holds a string that is not text (a lone surrogate, at samples.0.nodeid)",
        ),
        ('{"schema": "pytest-upskill/1", "samples": [], "x": NaN}', "NaN is not a number"),
        ('{"schema": "pytest-upskill/1", "samples": [], "x": 1e999}', "is out of range"),
    ],
)
def test_a_hostile_report_is_refused_in_one_line(
    pytester: pytest.Pytester, content: object, reason: str
) -> None:
    path = pytester.path / "hostile.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    line = one_line_error(merge(pytester, str(path), "--report=m.json"))
    assert line.startswith(f"pytest-upskill merge: {path}: ")
    assert reason in line
    assert "\x1b" not in line
    assert not (pytester.path / "m.json").exists()


def test_missing_files_and_bad_arguments_are_usage_errors(pytester: pytest.Pytester) -> None:
    assert "cannot be read: No such file" in one_line_error(
        merge(pytester, "nowhere.json", "--report=m.json")
    )
    assert merge(pytester, "--report=m.json").ret == 2  # no report to merge
    path = pytester.path / "r.json"
    path.write_text(json.dumps({"schema": "pytest-upskill/1", "samples": [SAMPLE], "run": RUN}))
    assert merge(pytester, str(path)).ret == 2  # no --report
    bad = merge(pytester, str(path), "--report=m.json", "--fail-under=2")
    assert bad.ret == 2
    bad.stderr.fnmatch_lines(["*--fail-under*expected a number from 0 to 1*"])


def test_a_report_without_its_run_merges_alone_only(pytester: pytest.Pytester) -> None:
    old = pytester.path / "old.json"
    old.write_text(json.dumps({"schema": "pytest-upskill/1", "samples": [SAMPLE]}))
    new = pytester.path / "new.json"
    second = {**SAMPLE, "nodeid": "t.py::t[m-baseline-1]", "sample": 1}
    new.write_text(json.dumps({"schema": "pytest-upskill/1", "samples": [second], "run": RUN}))

    alone = merge(pytester, str(old), "--report=alone.json")
    assert alone.ret == 0, alone.errlines
    report = read(pytester, "alone.json")
    assert "run" not in report
    assert [(r["model"], r["passed"], r["n"]) for r in report["summary"]] == [("m", 1, 1)]

    reason = one_line_error(merge(pytester, str(new), str(old), "--report=m.json"))
    assert f"{old} was written by a pytest-upskill that did not record its run" in reason


def test_runs_that_differ_are_named_in_each_way(pytester: pytest.Pytester) -> None:
    ours = pytester.path / "ours.json"
    ours.write_text(json.dumps({"schema": "pytest-upskill/1", "samples": [SAMPLE], "run": RUN}))
    other = {
        **RUN,
        "plugin_version": "0.2.0",
        "models": {"m": "openai:m@http://other:8000/v1"},
        "skills": {"s": "abc"},
        "settings": {**RUN["settings"], "temperature": 0.7},
        "shard": "2/2",  # theirs to differ in
    }
    theirs = pytester.path / "theirs.json"
    theirs.write_text(json.dumps({"schema": "pytest-upskill/1", "samples": [], "run": other}))
    reason = one_line_error(merge(pytester, str(ours), str(theirs), "--report=m.json"))
    for difference in (
        "the pytest-upskill version: 0.1.0 in ours.json, 0.2.0 in theirs.json",
        "model m: openai:m in ours.json, openai:m@http://other:8000/v1 in theirs.json",
        "skill s (the hash of its files): no such skill in ours.json, abc in theirs.json",
        "the setting temperature: null in ours.json, 0.7 in theirs.json",
    ):
        assert difference in reason
    assert "shard" not in reason


def report_of(samples: list[dict[str, Any]], **run: Any) -> str:
    return json.dumps({"schema": "pytest-upskill/1", "samples": samples, "run": {**RUN, **run}})


def test_shards_in_no_report_are_said(pytester: pytest.Pytester) -> None:
    first = {**SAMPLE, "nodeid": "t.py::t[m-baseline-0]"}
    third = {**SAMPLE, "nodeid": "t.py::u[m-baseline-0]", "test": "u"}
    (pytester.path / "1.json").write_text(report_of([first], shard="1/3"))
    (pytester.path / "3.json").write_text(report_of([third], shard="3/3"))
    result = merge(pytester, "1.json", "3.json", "--report=m.json")
    assert result.ret == 0, result.errlines
    result.stdout.fnmatch_lines(["upskill missing: shard 2 of 3: in no report"])
    assert read(pytester, "m.json")["run"]["shard"] is None


def test_hostile_text_in_a_report_is_escaped_in_the_junit_xml(pytester: pytest.Pytester) -> None:
    hostile = "</failure><script>alert(1)</script> & \x1b[2J\x00\x0b\ufffe end"
    samples = [
        {
            **SAMPLE,
            "nodeid": "a/t.py::T::t[<m>-baseline-0]",
            "outcome": "failed",
            "reason": hostile,
        },
        {**SAMPLE, "nodeid": "a/t.py::T::t[<m>-baseline-1]", "sample": 1, "outcome": "error"},
        {**SAMPLE, "nodeid": "a/t.py::T::t[<m>-baseline-2]", "sample": 2, "outcome": "skipped"},
        {**SAMPLE, "nodeid": "a/t.py::T::t[<m>-baseline-3]", "sample": 3},
    ]
    (pytester.path / "r.json").write_text(report_of(samples))
    result = merge(pytester, "r.json", "--report=m.json", "--junitxml=out/j.xml")
    assert result.ret == 0, result.errlines
    raw = (pytester.path / "out" / "j.xml").read_bytes()
    assert b"<script>" not in raw
    assert b"\x1b" not in raw
    assert b"\x00" not in raw
    root = ElementTree.fromstring(raw)
    suite = root.find("testsuite")
    assert suite is not None
    counts = [suite.get(k) for k in ("tests", "failures", "errors", "skipped")]
    assert counts == ["4", "1", "1", "1"]
    cases = list(root.iter("testcase"))
    assert (cases[0].get("classname"), cases[0].get("name")) == ("a.t.T", "t[<m>-baseline-0]")
    failure = cases[0].find("failure")
    assert failure is not None
    message = failure.get("message") or ""
    # Text, not markup; no terminal sequence or control, and U+FFFE (not XML) replaced.
    assert message == "upskill [check] failed: </failure><script>alert(1)</script> & \ufffd end"
    assert cases[1].find("error") is not None
    skipped = cases[2].find("skipped")
    assert skipped is not None
    assert skipped.get("type") == "pytest.skip"
    assert len(cases[3]) == 1  # a pass: its properties only
