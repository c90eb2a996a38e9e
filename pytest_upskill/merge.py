"""`python -m pytest_upskill merge`: the JSON reports of several runs of one campaign (shards,
or runs of a share of the samples each) as one run's. Every statistic is computed again from
the samples, so the merged report is what one run over them all would have written; the gates
are a session's, and so are the reports."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path

from .report import summary_table, write_html_report, write_json_report, write_markdown_report
from .report.campaign import MergeRefused, ReportInvalid, load_report, merge
from .report.junit import write_junit_xml
from .report.results import Statistics, gate_failures, statistics
from .sanitize import clean_text

__all__ = ["EXIT_GATE_FAILED", "EXIT_OK", "EXIT_REFUSED", "add_arguments", "run"]

EXIT_OK = 0
EXIT_GATE_FAILED = 1  # as pytest's TESTS_FAILED: a CI job fails the same way
EXIT_REFUSED = 2  # as argparse's usage errors: bad arguments, a bad report, runs that differ
_SHOWN_LINES = 100  # of the duplicate and missing samples, each


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # NaN too
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The merge command's arguments; each option also answers to its pytest option's name,
    which the gates' messages use."""
    parser.add_argument(
        "reports",
        nargs="+",
        type=Path,
        metavar="REPORT.json",
        help="JSON reports of runs of one campaign (--upskill-report)",
    )
    parser.add_argument(
        "--report",
        "--upskill-report",
        required=True,
        type=Path,
        metavar="OUT.json",
        help="the merged JSON report",
    )
    parser.add_argument(
        "--markdown",
        "--upskill-markdown",
        type=Path,
        metavar="FILE",
        help="also a Markdown summary",
    )
    parser.add_argument(
        "--html",
        "--upskill-html",
        type=Path,
        metavar="FILE",
        help="also an HTML report (without the samples' files)",
    )
    parser.add_argument(
        "--junitxml", type=Path, metavar="FILE", help="also JUnit XML, one test case per sample"
    )
    parser.add_argument(
        "--fail-under",
        "--upskill-fail-under",
        type=_number(0, 1),
        metavar="RATE",
        help="exit 1 if a skill condition's pass rate (its point estimate) is under RATE "
        "(0 to 1), or if it counted no sample",
    )
    parser.add_argument(
        "--min-lift",
        "--upskill-min-lift",
        type=_number(-1, 1),
        metavar="DELTA",
        help="exit 1 unless the lower bound of the 95%% interval of each skill's lift reaches "
        "DELTA (-1 to 1)",
    )


def _without_files(stats: Statistics) -> Statistics:
    """The HTML drill-down shows the files a record names; a report is not trusted to choose
    what the page reads (and the runs' folders are mostly on other machines)."""
    cleared = {"directory": "", "build_directory": "", "transcript": ""}
    records = [record.model_copy(update=cleared) for record in stats.records]
    return dataclasses.replace(stats, records=records)


def _print_lines(title: str, lines: list[str]) -> None:
    for line in lines[:_SHOWN_LINES]:
        print(f"{title}: {line}")
    if len(lines) > _SHOWN_LINES:
        print(f"{title}: … and {len(lines) - _SHOWN_LINES} more")


def run(args: argparse.Namespace) -> int:
    """Merge, write the reports, print the summary; the exit status."""
    try:
        merged = merge([load_report(path) for path in args.reports])
    except (ReportInvalid, MergeRefused) as exc:
        print(f"pytest-upskill merge: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    stats = statistics(merged.records, args.min_lift)
    gates = gate_failures(stats.summary, args.fail_under, args.min_lift, lifts=stats.lift)
    try:
        write_json_report(args.report, stats, merged.run)
        if args.markdown is not None:
            write_markdown_report(args.markdown, stats, gates)
        if args.html is not None:
            write_html_report(args.html, _without_files(stats), gates)
        if args.junitxml is not None:
            write_junit_xml(args.junitxml, merged.records)
    except OSError as exc:
        where = exc.filename or "a report"
        print(f"pytest-upskill merge: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_REFUSED
    reports = f"{len(args.reports)} report{'s' * (len(args.reports) > 1)}"
    samples = f"{len(merged.records)} sample{'s' * (len(merged.records) != 1)}"
    print(f"upskill merge: {reports}, {samples}")
    if stats.records:
        print("\n".join(summary_table(stats)))
    _print_lines("upskill duplicate sample", merged.duplicates)
    _print_lines("upskill missing", merged.missing)
    for label, path in (
        ("report", args.report),
        ("markdown", args.markdown),
        ("html", args.html),
        ("junitxml", args.junitxml),
    ):
        if path is not None:
            print(f"upskill {label}: {path}")
    for gate in gates:
        # One line each: a label from a report may hold a newline.
        print(f"upskill gate failed: {' '.join(clean_text(gate).split())}")
    return EXIT_GATE_FAILED if gates else EXIT_OK
