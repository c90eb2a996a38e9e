from __future__ import annotations

import pytest

from pytest_upskill.results import SampleRecord, summarize, wilson_interval


@pytest.mark.parametrize(
    ("passed", "n", "low", "high"),
    # Reference values from the Wilson score formula with z = 1.96.
    [(1, 1, 0.2065, 1.0), (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (81, 100, 0.7222, 0.8749)],
)
def test_wilson_interval(passed: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(passed, n) == pytest.approx((low, high), abs=1e-4)


def _record(condition: str, outcome: str, index: int) -> SampleRecord:
    return SampleRecord.model_validate(
        {
            "nodeid": f"t.py::t[{index}]",
            "test": "t",
            "model": "oracle",
            "condition": condition,
            "sample": index,
            "outcome": outcome,
            "stage": "check",
            "built": outcome != "error",
        }
    )


def test_summary_leaves_errors_and_skips_out_of_the_rate() -> None:
    records = [
        _record("baseline", outcome, i)
        for i, outcome in enumerate(["passed", "failed", "error", "skipped", "passed"])
    ] + [_record("cpu-kernels", "passed", 0)]
    baseline, skill = summarize(records)
    assert (baseline.n, baseline.passed, baseline.errors, baseline.skipped) == (3, 2, 1, 1)
    assert baseline.pass_rate == pytest.approx(2 / 3)
    assert baseline.built == 4
    assert (skill.condition, skill.n, skill.pass_rate) == ("cpu-kernels", 1, 1.0)
