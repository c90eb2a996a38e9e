"""The reports and the record of a sample whose kernel ran in the sandbox, built in the pytest
process from its own sample: from the test process's typed result, or from why there is none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pytest

from ..errors import SampleError, SampleFailed
from ..report.junit import record_properties
from ..report.results import Outcome, SampleRecord, SpeedupRecord
from ..sanitize import clean_text

if TYPE_CHECKING:
    from ..sample import Sample
    from .kernels import Verdict
    from .wire import PhaseReport, Result

__all__ = ["attach_record", "crash_reports", "result_reports"]

# What each outcome of pytest's report lets the test process claim for the sample's record.
_CLAIMS: dict[str, tuple[Outcome, ...]] = {
    "passed": ("passed",),
    "skipped": ("skipped",),
    "failed": ("failed", "error"),
}


def attach_record(item: pytest.Item, report: pytest.TestReport, record: SampleRecord) -> None:
    """Put a sample's record on its report (xdist carries it to the controller like any report)
    and on the JUnit XML properties."""
    report.upskill_sample = record.model_dump(mode="json")  # type: ignore[attr-defined]
    item.user_properties += record_properties(record)  # as a merge's JUnit XML has them
    report.user_properties = list(item.user_properties)


def _report(
    item: pytest.Item,
    outcome: Literal["passed", "failed", "skipped"],
    when: Literal["setup", "call", "teardown"],
    longrepr: Any = None,
    **fields: Any,
) -> pytest.TestReport:
    return pytest.TestReport(
        item.nodeid,
        item.location,
        {name: 1 for name in item.keywords},
        outcome,
        longrepr,
        when,
        user_properties=list(item.user_properties),  # junitxml reads the teardown's
        **fields,
    )


def crash_reports(item: pytest.Item, sample: Sample, verdict: Verdict) -> list[pytest.TestReport]:
    """The reports of an item whose test process died, was stopped or answered nonsense, so
    the report stays complete: the call failed, or (the harness failed) the setup errored."""
    sample.stage = verdict.stage
    issue = (SampleError if verdict.harness else SampleFailed)(verdict.stage, verdict.reason)
    longrepr = f"{issue}\n\n{clean_text(verdict.detail)}" if verdict.detail else str(issue)
    if verdict.harness:
        ending = _report(item, "failed", "setup", longrepr)
        reports = [ending]
    else:
        ending = _report(item, "failed", "call", longrepr)
        reports = [_report(item, "passed", "setup"), ending]
    attach_record(item, ending, sample.record(issue.outcome, issue.reason))
    return [*reports, _report(item, "passed", "teardown")]


def _longrepr(item: pytest.Item, phase: PhaseReport) -> Any:
    if phase.outcome == "passed":
        return None
    if phase.outcome == "skipped":  # (path, line, reason), as pytest's -rs summary reads it
        line = (item.location[1] or 0) + 1
        return (str(item.path), line, f"Skipped: {clean_text(phase.text)}")
    return clean_text(phase.text)


def result_reports(item: pytest.Item, sample: Sample, result: Result) -> list[pytest.TestReport]:
    """The reports of an item from its test process's result; the record is this process's
    sample, with only what the test process owns (outcome, reason, measurements) taken from
    the result, and only where its reports agree."""
    whens = [phase.when for phase in result.reports]
    if whens not in (["setup", "teardown"], ["setup", "call", "teardown"]):
        from .kernels import Verdict

        reason = f"the test process sent reports of phases {', '.join(whens)}"
        return crash_reports(item, sample, Verdict("check", reason))
    reports = []
    for phase in result.reports:
        report = _report(
            item,
            phase.outcome,
            phase.when,
            _longrepr(item, phase),
            sections=[(clean_text(title), clean_text(body)) for title, body in phase.sections],
            duration=phase.duration,
        )
        if phase.wasxfail is not None:
            report.wasxfail = clean_text(phase.wasxfail)
        reports.append(report)
    ending = reports[1] if reports[0].passed and len(reports) == 3 else reports[0]
    outcome: Outcome = ending.outcome
    if result.outcome in _CLAIMS[ending.outcome]:
        outcome = result.outcome
    reason = "" if outcome == "passed" else clean_text(result.reason).strip().partition("\n")[0]
    sample.stage = result.stage
    sample.speedups = [SpeedupRecord(**m.model_dump()) for m in result.speedups]
    attach_record(item, ending, sample.record(outcome, reason))
    for report in reports:  # junitxml reads the teardown's
        report.user_properties = list(item.user_properties)
    return reports
