"""The plugin object that gathers the samples' records (from every xdist worker, through the
reports) and, once, at the session's end, computes the statistics, applies the gates and
writes the reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ..report import summary_table, write_html_report, write_json_report, write_markdown_report
from ..report.campaign import RunInfo, in_run_order, run_info
from ..report.results import SampleRecord, Statistics, gate_failures, statistics
from ..sanitize import clean_text

if TYPE_CHECKING:
    from .state import Session

__all__ = ["RecordKeeper"]


class RecordKeeper:
    """Registered as a plugin where reports are written: a plain run or an xdist controller."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.settings = session.settings
        self.records: list[SampleRecord] = []
        # --upskill-resume: the earlier run's samples that stand for this run's.
        self.resumed: Callable[[], list[SampleRecord]] = list
        self.stats: Statistics | None = None  # computed once, at the session's end
        self.gates: list[str] = []  # the CI gates the session missed

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "upskill_sample", None)
        if data is not None:
            self.records.append(SampleRecord.model_validate(data))

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """xdist: a sample whose test took its worker down (generated code can segfault) still
        gets a record, so the report stays complete."""
        record = self._crash_record(crashitem)
        if record is not None:
            report.upskill_sample = record.model_dump(mode="json")  # type: ignore[attr-defined]

    def _crash_record(self, nodeid: str) -> SampleRecord | None:
        """The record of a sample that never reported: which one it was is in its test id,
        `test[...-MODEL-CONDITION-INDEX-...]` (this process collected no items)."""
        test, _, params = nodeid.rpartition("::")[2].partition("[")
        pieces = f"-{params.removesuffix(']')}-"
        for model in self.settings.models:
            for condition in self.session.conditions:
                for index in range(self.settings.samples):
                    if f"-{model.label}-{condition}-{index}-" in pieces:
                        return SampleRecord(
                            nodeid=nodeid,
                            test=test,
                            model=model.label,
                            condition=condition,
                            sample=index,
                            outcome="failed",
                            stage="check",
                            reason="the xdist worker died while running this sample (a crash "
                            "in the kernel or the test)",
                        )
        return None

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        settings = self.settings
        made = {record.nodeid for record in self.records}
        resumed = [record for record in self.resumed() if record.nodeid not in made]
        self.records += resumed
        # As one run of the whole campaign would: a failed sample fails the session.
        failed = any(record.outcome == "failed" for record in resumed)
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        # The tables list models and conditions in the session's order, whatever order xdist's
        # workers reported in.
        run = self.run_info()  # reads every skill's files: once
        self.records = in_run_order(self.records, run)
        stats = self.stats = statistics(self.records, settings.min_lift)
        self.gates = gate_failures(
            stats.summary, settings.fail_under, settings.min_lift, lifts=stats.lift
        )
        if self.gates and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if settings.report is not None:
            write_json_report(settings.report, stats, run)
        if settings.markdown is not None:
            write_markdown_report(settings.markdown, stats, self.gates)
        if settings.html is not None:
            write_html_report(settings.html, stats, self.gates)

    def run_info(self) -> RunInfo:
        """What a run merged with this one must agree on: its skills' files among the rest.
        (An xdist controller collects nothing, so it knows no skill that only a cases file
        brings.)"""
        skills = {}
        for name, skill in self.session.conditions.items():
            if skill is not None:
                try:
                    skills[name] = skill.digest()
                except OSError:  # its folder went away during the run: no run can agree
                    skills[name] = "unreadable"
        return run_info(self.settings, skills)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.stats is None or not self.stats.records:
            return
        terminalreporter.write_sep("=", "upskill summary")
        verbose = terminalreporter.config.get_verbosity() > 0
        for line in summary_table(self.stats, verbose=verbose):
            terminalreporter.write_line(line)
        for label, path in (
            ("report", self.settings.report),
            ("markdown", self.settings.markdown),
            ("html", self.settings.html),
        ):
            if path is not None:
                terminalreporter.write_line(f"upskill {label}: {path}")
        for gate in self.gates:
            terminalreporter.write_line(f"upskill gate failed: {clean_text(gate)}", red=True)
