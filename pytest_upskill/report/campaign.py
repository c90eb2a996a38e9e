"""Campaigns over several runs: what a JSON report says about its run (`RunInfo`), reading a
report back (`load_report`), and merging the samples of runs that agree (`merge`).

Reports are untrusted input here (`untrusted`): every problem with one is a `ReportInvalid` of
one short line, never a traceback, and nothing a report holds is shown without being cleaned
and cut short.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from .. import __version__
from ..config import BASELINE, ModelSpec, Settings, public_url
from .json import SCHEMA
from .results import SampleRecord
from .untrusted import ReportInvalid, problem, read_json, shown

__all__ = [
    "MergeRefused",
    "Merged",
    "ReportInvalid",
    "RunInfo",
    "RunReport",
    "RunSettings",
    "differences",
    "in_run_order",
    "load_report",
    "merge",
    "run_info",
]

_MOST_TURNS = 1000  # of an agent loop's sample read from a report


class MergeRefused(Exception):
    """Reports whose runs do not make one campaign; the message is one line."""


class RunSettings(BaseModel):
    """The settings that change what a sample means: runs that differ in one are not one
    campaign. (Concurrency, time limits, isolation and reports only change how it ran.)"""

    model_config = ConfigDict(frozen=True)

    samples: int = Field(ge=1)
    baseline: bool
    turns: int = Field(ge=1)
    agent: str
    skill_mode: str
    skill_references: str
    binding: str
    temperature: float | None
    max_tokens: int
    max_total_tokens: int | None
    max_sample_s: float | None
    max_cost_usd: float | None
    model_params: dict[str, JsonValue]


class RunInfo(BaseModel):
    """The JSON report's `run`: what must agree between runs whose samples are merged."""

    model_config = ConfigDict(frozen=True)

    plugin_version: str
    models: dict[str, str] = Field(max_length=1000)  # label -> provider:model[@base URL]
    skills: dict[str, str] = Field(max_length=1000)  # skill condition -> hash of its files
    settings: RunSettings
    shard: str | None = Field(default=None, pattern=r"^[0-9]{1,6}/[0-9]{1,6}$")


def _identity(spec: ModelSpec) -> str:
    return (
        spec.identity if spec.base_url is None else f"{spec.identity}@{public_url(spec.base_url)}"
    )


def run_info(settings: Settings, skills: Mapping[str, str]) -> RunInfo:
    """The run of a session with `settings` whose skill conditions hash to `skills`."""
    fields = RunSettings.model_fields
    return RunInfo(
        plugin_version=__version__,
        models={spec.label: _identity(spec) for spec in settings.models},
        skills=dict(skills),
        settings=RunSettings(**{name: getattr(settings, name) for name in fields}),
        shard=None if settings.shard is None else "{}/{}".format(*settings.shard),
    )


@dataclass(frozen=True)
class RunReport:
    """One report read back: its run (None for a report written before runs were recorded)
    and its samples."""

    path: Path
    run: RunInfo | None
    records: list[SampleRecord]


class _Report(BaseModel):
    run: RunInfo | None = None
    samples: list[SampleRecord]


def load_report(path: Path) -> RunReport:
    """Read and validate a JSON report; ReportInvalid, one line, for anything else."""
    document = read_json(path)
    if not isinstance(document, dict):
        raise ReportInvalid(f"{path}: is not a pytest-upskill report (not a JSON object)")
    schema = document.get("schema")
    if schema != SCHEMA:
        raise ReportInvalid(
            f"{path}: its schema is {shown(schema, 40)}, not {SCHEMA}: it was not written by "
            "this version of pytest-upskill"
        )
    try:
        report = _Report.model_validate(document)
    except ValidationError as exc:
        raise ReportInvalid(f"{path}: is not a valid report: {problem(exc)}") from None
    for index, record in enumerate(report.samples):
        # The tables count turns one by one: a hostile count would never end.
        turns = [record.turns, record.passed_at_turn or 1, *(t.turn for t in record.per_turn)]
        if max(turns) > _MOST_TURNS:
            raise ReportInvalid(
                f"{path}: is not a valid report: samples.{index}: a sample of {max(turns):,} "
                f"turns, more than {_MOST_TURNS:,}"
            )
    return RunReport(path, report.run, report.samples)


def differences(
    a: RunInfo, b: RunInfo, names: tuple[str, str] = ("the first run", "the second run")
) -> list[str]:
    """Each way the runs `a` and `b` (called `names`) disagree on what a sample means, a
    sentence each; the shard is theirs to differ in."""
    found = []

    def differ(what: str, x: object, y: object) -> None:
        if x != y:
            found.append(f"{what}: {shown(x)} in {names[0]}, {shown(y)} in {names[1]}")

    differ("the pytest-upskill version", a.plugin_version, b.plugin_version)
    for kind, ours, theirs in (("model", a.models, b.models), ("skill", a.skills, b.skills)):
        what = " (the hash of its files)" if kind == "skill" else ""
        absent = f"no such {kind}"
        for name in dict.fromkeys([*ours, *theirs]):
            differ(
                f"{kind} {shown(name, 40)}{what}", ours.get(name, absent), theirs.get(name, absent)
            )
    ours_settings, theirs_settings = a.settings.model_dump(), b.settings.model_dump()
    for name, value in ours_settings.items():
        differ(f"the setting {name}", value, theirs_settings[name])
    return found


@dataclass(frozen=True)
class Merged:
    """The samples of several runs as one: `duplicates` and `missing` say, a line each, which
    sample was in more than one report (and which was kept) and which was in none."""

    run: RunInfo | None
    records: list[SampleRecord]
    duplicates: list[str]
    missing: list[str]


def _base(record: SampleRecord) -> str:
    """The test of a sample: its id without the parameters."""
    return record.nodeid.partition("[")[0]


def merge(reports: Sequence[RunReport]) -> Merged:
    """The samples of `reports` as one run's; MergeRefused where their runs differ, one lacks
    its run, or one test got different prompts in two of them."""
    if not reports:
        raise MergeRefused("no report to merge")
    first = reports[0]
    for report in reports[1:]:
        if first.run is None or report.run is None:
            unrecorded = first if first.run is None else report
            raise MergeRefused(
                f"{unrecorded.path} was written by a pytest-upskill that did not record its run "
                '(its report has no "run"), so nothing says it agrees with the others: '
                "merge it alone, or run it again"
            )
        names = first.path.name, report.path.name
        if names[0] == names[1]:  # shards' artifacts, each in its own folder
            names = str(first.path), str(report.path)
        found = differences(first.run, report.run, names)
        if found:
            more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
            raise MergeRefused(
                f"{report.path} and {first.path} are not runs of one campaign: "
                + "; ".join(found[:5])
                + more
            )
    _same_prompts(reports)
    records, duplicates = _deduplicated(reports)
    run = first.run.model_copy(update={"shard": None}) if first.run else None
    missing: list[str] = []
    if run is not None:
        records = in_run_order(records, run)
        missing = _missing_shards(reports) + _missing_samples(records, run)
    return Merged(run, records, duplicates, missing)


def _same_prompts(reports: Sequence[RunReport]) -> None:
    seen: dict[tuple[str, str, str], tuple[str, Path]] = {}
    for report in reports:
        for record in report.records:
            if not record.prompt_digest:
                continue
            key = (_base(record), record.model, record.condition)
            digest, path = seen.setdefault(key, (record.prompt_digest, report.path))
            if digest != record.prompt_digest and path != report.path:
                test, model, condition = (shown(part, 120) for part in key)
                raise MergeRefused(
                    f"the prompts differ: {test} asked {model} ({condition}) one prompt in "
                    f"{path} and another in {report.path}; the task or the prompt changed "
                    "between the runs"
                )


def _deduplicated(reports: Sequence[RunReport]) -> tuple[list[SampleRecord], list[str]]:
    """One record per test id: the first that is not an error (a run again after a provider
    failed stands), else the first."""
    kept: dict[str, tuple[SampleRecord, Path]] = {}
    found_in: dict[str, list[Path]] = {}
    for report in reports:
        for record in report.records:
            found_in.setdefault(record.nodeid, []).append(report.path)
            chosen = kept.get(record.nodeid)
            if chosen is None or (chosen[0].outcome == "error" and record.outcome != "error"):
                kept[record.nodeid] = record, report.path
    lines = []
    for nodeid, paths in found_in.items():
        if len(paths) > 1:
            record, path = kept[nodeid]
            where = " and ".join(str(p) for p in dict.fromkeys(paths))
            times = "" if len(set(paths)) == len(paths) else f" ({len(paths)} times)"
            lines.append(
                f"{shown(nodeid, 200)} is in {where}{times}: kept the one of {path} "
                f"({record.outcome})"
            )
    return [record for record, _ in kept.values()], lines


def in_run_order(records: list[SampleRecord], run: RunInfo) -> list[SampleRecord]:
    """Models and conditions in the run's order, as one session would have met them, so the
    tables list them as a single run would."""
    models = {label: rank for rank, label in enumerate(run.models)}
    conditions = {name: rank for rank, name in enumerate([BASELINE, *run.skills])}
    return sorted(
        records,
        key=lambda r: (
            models.get(r.model, len(models)),
            conditions.get(r.condition, len(conditions)),
        ),
    )


def _gaps(present: set[int], count: int) -> list[tuple[int, int]]:
    """The spans of 0..count-1 not in `present`; from what is present, so a huge `count`
    costs nothing."""
    spans, start = [], 0
    for number in sorted(n for n in present if 0 <= n < count):
        if number > start:
            spans.append((start, number - 1))
        start = number + 1
    if start < count:
        spans.append((start, count - 1))
    return spans


def _spans(spans: list[tuple[int, int]], offset: int = 0) -> tuple[int, str]:
    """How many numbers the spans hold, and which as text (`1, 3-5, 8`), plus `offset`."""
    total = sum(b - a + 1 for a, b in spans)
    shown = [str(a + offset) if a == b else f"{a + offset}-{b + offset}" for a, b in spans[:50]]
    more = ", …" if len(spans) > 50 else ""
    return total, ", ".join(shown) + more


def _missing_samples(records: list[SampleRecord], run: RunInfo) -> list[str]:
    """For each test seen: every model x each of its conditions seen x each sample index that
    no report holds."""
    conditions: dict[str, dict[str, None]] = {}
    present: dict[tuple[str, str, str], set[int]] = {}
    for record in records:
        conditions.setdefault(_base(record), {})[record.condition] = None
        present.setdefault((_base(record), record.model, record.condition), set()).add(
            record.sample
        )
    lines = []
    for test, seen in conditions.items():
        for model in run.models:
            for condition in seen:
                indices = present.get((test, model, condition), set())
                absent, which = _spans(_gaps(indices, run.settings.samples))
                if absent:
                    lines.append(
                        f"{shown(test, 200)}: {shown(model, 60)} {shown(condition, 60)} "
                        f"sample{'s' * (absent > 1)} {which} in no report"
                    )
    return lines


def _missing_shards(reports: Sequence[RunReport]) -> list[str]:
    shards: dict[int, set[int]] = {}
    for report in reports:
        if report.run is not None and report.run.shard is not None:
            index, count = (int(n) for n in report.run.shard.split("/"))
            shards.setdefault(count, set()).add(index)
    lines = []
    for count, present in shards.items():
        # Shard I of N is index I - 1 of N.
        absent, which = _spans(_gaps({i - 1 for i in present}, count), offset=1)
        if absent:
            lines.append(f"shard{'s' * (absent > 1)} {which} of {count}: in no report")
    return lines
