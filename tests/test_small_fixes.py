"""The smaller items of issue 16: the context line's baseline, the tokens-out header, report
permissions, --upskill-no-baseline with cases that bring a skill, and case failure reasons."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_server import ModelServer

from conftest import EXAMPLES
from pytest_upskill.paths import write_json_atomically
from pytest_upskill.report.results import SampleRecord, statistics
from pytest_upskill.report.sections import Lines, report_sections
from pytest_upskill.report.tables import summary_cells

CUDA_REVIEW = EXAMPLES / "skills" / "cuda-review"


def record(test: str, condition: str, input_tokens: int, skill_tokens: int = 0) -> SampleRecord:
    return SampleRecord.model_validate(
        {
            "nodeid": f"x::{test}[m-{condition}-0]",
            "test": test,
            "model": "m",
            "condition": condition,
            "sample": 0,
            "outcome": "passed",
            "stage": "check",
            "usage": {"input_tokens": input_tokens, "output_tokens": 10},
            "skill_tokens_estimate": skill_tokens,
        }
    )


def context(records: list[SampleRecord]) -> list[str]:
    sections = report_sections(statistics(records))
    return [
        line for s in sections if isinstance(s, Lines) and s.kind == "context" for line in s.lines
    ]


def test_context_compares_input_tokens_on_the_tests_both_conditions_ran() -> None:
    # The skill owns its case, so it runs on that one only; the baseline's kernel test has a
    # long prompt that must not lower the baseline's side.
    records = [
        record("kernel", "baseline", 3000),
        record("case", "baseline", 400),
        record("case", "skill", 1000, skill_tokens=150),
    ]
    assert context(records) == [
        "context m skill: skill block ~150 tokens (estimated: characters / 4); input tokens "
        "1000 vs 400 baseline on the 1 test both ran (+600, as the model counted)"
    ]


def test_context_over_every_test_says_nothing_of_which() -> None:
    records = [
        record("a", "baseline", 400),
        record("b", "baseline", 600),
        record("a", "skill", 900, skill_tokens=120),
        record("b", "skill", 1300, skill_tokens=120),
    ]
    assert context(records) == [
        "context m skill: skill block ~120 tokens (estimated: characters / 4); input tokens "
        "1100 vs 500 baseline (+600, as the model counted)"
    ]


def test_the_tokens_out_column_says_it_is_a_mean() -> None:
    header = summary_cells(statistics([record("a", "baseline", 400)]).summary, per_test=False)[0]
    assert "mean tokens out" in header
    assert "tokens out" not in header


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process's umask after a test sets it (pytester's children inherit it)."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_reports_get_the_permissions_of_any_new_file(
    pytester: pytest.Pytester, upskill_args: list[str], umask: None
) -> None:
    shutil.copytree(CUDA_REVIEW, pytester.path / "cuda-review")
    reports = ["--upskill-report=r.json", "--upskill-markdown=r.md", "--upskill-html=r.html"]
    result = pytester.runpytest("--upskill-model=oracle", *reports, *upskill_args)
    result.assert_outcomes(passed=6)
    for name in ("r.json", "r.md", "r.html"):
        assert mode(pytester.path / name) == 0o644, name


def test_atomic_json_writes_follow_the_umask(tmp_path: Path, umask: None) -> None:
    # Cassettes and build results are written the same way.
    os.umask(0o027)
    write_json_atomically(tmp_path / "cassette.json", {"reply": "x"})
    assert mode(tmp_path / "cassette.json") == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["cassette.json"]  # no temporary left


def skill_and_cases(root: Path) -> Path:
    """The example skill with its cases in an upskill tests file beside it, out of the tests
    path, and a plain test in it."""
    skill = root / "skills" / "cuda-review"
    shutil.copytree(CUDA_REVIEW, skill)
    meta = skill / "skill_meta.json"
    (skill / "tests.json").write_text(json.dumps({"cases": json.loads(meta.read_text())["tests"]}))
    meta.unlink()
    (root / "plain").mkdir()
    (root / "plain" / "test_plain.py").write_text("def test_plain(): pass\n")
    return skill / "tests.json"


def test_no_baseline_runs_the_skill_that_cases_bring(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    cases = skill_and_cases(pytester.path)
    args = ["plain", "--upskill-model=oracle", "--upskill-no-baseline", "--upskill-report=r.json"]
    result = pytester.runpytest(*args, f"--upskill-cases={cases}", *upskill_args)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["oracle  cuda-review  3/3  *"])
    data = json.loads((pytester.path / "r.json").read_text())
    assert {s["condition"] for s in data["samples"]} == {"cuda-review"}


def test_no_baseline_still_refuses_cases_that_bring_no_skill(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    cases = skill_and_cases(pytester.path)
    (cases.parent / "SKILL.md").unlink()
    args = ["--upskill-model=oracle", "--upskill-no-baseline", f"--upskill-cases={cases}"]
    result = pytester.runpytest(*args, *upskill_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --upskill-no-baseline leaves no condition to run: *"])


def test_a_failing_cases_reason_has_no_pytest_label(
    pytester: pytest.Pytester, upskill_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = skill_and_cases(pytester.path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    with ModelServer(answer=lambda request: "Looks fine to me.") as server:
        args = [f"--upskill-model=openai:m@{server.url}/v1", "--upskill-report=r.json"]
        result = pytester.runpytest("plain", *args, f"--upskill-cases={cases}", *upskill_args)
    result.assert_outcomes(passed=1, failed=6)
    samples: list[dict[str, Any]] = json.loads((pytester.path / "r.json").read_text())["samples"]
    reasons = {s["reason"] for s in samples}
    assert all(r.startswith("the reply lacks ") for r in reasons), reasons
