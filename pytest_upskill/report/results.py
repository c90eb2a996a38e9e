"""Sample records (what the report stores) and the statistics over them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from ..errors import Stage
from .lift import ComparisonRow, Counts, LiftRow, comparisons, lift
from .speed import FAST_P, SUSPICIOUS_SPEEDUP, SpeedupRecord, speedup_fields
from .stats import clustered_rate, geomean, mean, pass_at_k
from .turns import at_turn, padded, turn_fields

# FAST_P, SUSPICIOUS_SPEEDUP, SpeedupRecord and speedup_fields live in `.speed`; they stay
# importable from here, where the rest of the package and users' tests look for them.
__all__ = [
    "FAST_P",
    "SUSPICIOUS_SPEEDUP",
    "Outcome",
    "SampleRecord",
    "SpeedupRecord",
    "Statistics",
    "SummaryRow",
    "TurnRecord",
    "UsageRecord",
    "counts_by_test",
    "gate_failures",
    "merge_parameter_sets",
    "speedup_fields",
    "statistics",
    "summarize",
    "summarize_by_test",
]

Outcome = Literal["passed", "failed", "error", "skipped"]


class UsageRecord(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class TurnRecord(BaseModel):
    """One turn of an agent loop: where it got to, and what the model spent on it."""

    turn: int
    stage: Stage
    outcome: Outcome
    reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    tool_calls: list[str] = []  # the tools the model called this turn, in order


class SampleRecord(BaseModel):
    """One sample in the JSON report; travels from xdist workers on the test report."""

    nodeid: str
    test: str
    model: str
    condition: str
    sample: int
    outcome: Outcome
    stage: Stage
    reason: str = ""
    usage: UsageRecord = UsageRecord()
    latency_s: float = 0.0  # from sending the request to the reply's last token
    cached: bool = False  # replayed from a cassette written before this session
    truncated: bool = False  # the reply stopped at --upskill-max-tokens
    # Where a streamed reply's time went: to its first token (the server's queue and the
    # prompt's prefill), then generating; and before sending, waiting for a concurrency slot.
    first_token_s: float | None = None
    generation_s: float | None = None
    wait_s: float = 0.0
    started_at: float | None = None  # when this session sent it (epoch seconds)
    # An agent loop (--upskill-turns): the turns it took, the first that passed, each turn.
    turns: int = 1
    passed_at_turn: int | None = None
    per_turn: list[TurnRecord] = []
    agent: str = ""  # tools or feedback ('' for a single reply)
    skill_mode: str = ""  # an agent loop's: preload or disclose
    # --upskill-skill-mode=disclose: the turn the model first read its skill (None: never).
    skill_loaded_at_turn: int | None = None
    # An agent CLI's JSON events (its transcript), kept in the sample's folder.
    transcript: str = ""
    # The reply's text, hashed: samples of one test with the same reply are not independent.
    reply_digest: str = ""
    # The first turn's prompt as sent (system and the task's message), hashed: the runs of a
    # campaign must have asked each test the same (`campaign.merge`).
    prompt_digest: str = ""
    # The skill block's size in the prompt, in tokens estimated as characters / 4 (0: baseline).
    skill_tokens_estimate: int = 0
    cost_usd: float | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    built: bool = False
    build_cached: bool = False
    build_cpu_s: float = 0.0  # the compilers' CPU seconds, where this session built it
    compile_only: bool = False
    directory: str = ""
    build_directory: str = ""  # the cached build, whose build.log the HTML report shows
    warnings: list[str] = []
    isolation: str = ""  # sandbox (child process, Landlock), process (child process) or off
    # From check.speedup in the test, when it calls it: reference time over kernel time.
    speedup: float | None = None
    kernel_s: float | None = None
    reference_s: float | None = None
    speedup_suspicious: bool = False  # by `speed.suspicious_speedup`, over its measurements
    speedups: list[SpeedupRecord] = []


class SummaryRow(BaseModel):
    """One (model, condition), or one (test, model, condition): errors and skips stay out of n."""

    model: str
    condition: str
    test: str | None = None  # set in the per-test rows
    n: int
    passed: int
    pass_rate: float  # the mean of the per-test rates (the pooled rate when counts are equal)
    ci_low: float
    ci_high: float
    tests: int = 0  # with counted samples
    # How many of its samples count as one independent draw of the rate over tests (>= 1).
    design_effect: float = 1.0
    built: int
    built_rate: float  # of the samples that were not errors
    skipped: int
    errors: int
    pass_at_k: dict[str, float]  # k -> unbiased pass@k, averaged over tests
    mean_input_tokens: float
    mean_output_tokens: float
    mean_latency_s: float  # waiting on the server included: see mean_generation_s
    # Over streamed replies: the time from their first token to their last, which a busy server
    # does not inflate (latency counts its queue); None when no reply was timed so.
    mean_generation_s: float | None = None
    mean_cost_usd: float | None  # over the samples whose price is known; None if none is
    truncated: int = 0  # replies that stopped at --upskill-max-tokens
    # Samples whose reply repeats an earlier sample's of the same test, word for word: they are
    # not independent draws (temperature 0, a seed, a cache on the server).
    duplicate_replies: int = 0
    # Agent loops (--upskill-turns): turn -> the rate of passes by that turn (a pass@turn
    # curve, the mean of per-test rates), and the tokens a passing sample spent to pass.
    pass_at_turn: dict[str, float] = {}
    mean_tokens_to_pass: float | None = None
    mean_cost_to_pass: float | None = None  # where prices are known
    # --upskill-skill-mode=disclose: the share of samples whose model read its skill (a
    # baseline has none to read: 0).
    skill_load_rate: float | None = None
    # What the skill costs in context: its block in the prompt, characters / 4 (an estimate).
    mean_skill_tokens_estimate: float = 0.0
    # Over passing samples that measured a speedup; None when none did.
    geomean_speedup: float | None = None
    # p -> the share of the n samples that passed and were more than p times as fast as the
    # reference (KernelBench's fast_p); empty when no sample measured a speedup.
    fast_p: dict[str, float] = {}
    suspicious_speedups: int = 0


def _row(
    model: str, condition: str, group: list[SampleRecord], test: str | None = None
) -> SummaryRow:
    counted = [r for r in group if r.outcome in ("passed", "failed")]
    passed = sum(r.outcome == "passed" for r in counted)
    per_test: dict[str, list[int]] = {}
    for record in counted:
        per_test.setdefault(record.test, []).append(record.outcome == "passed")
    rate = clustered_rate([(sum(outcomes), len(outcomes)) for outcomes in per_test.values()])
    not_errors = [r for r in group if r.outcome != "error"]
    built = sum(r.built for r in group)
    costs = [r.cost_usd for r in group if r.cost_usd is not None]
    generations = [r.generation_s for r in group if r.generation_s is not None]
    return SummaryRow(
        model=model,
        condition=condition,
        test=test,
        n=len(counted),
        passed=passed,
        pass_rate=round(rate.rate, 6),
        ci_low=round(rate.low, 4),
        ci_high=round(rate.high, 4),
        tests=rate.tests,
        design_effect=round(rate.design_effect, 4),
        built=built,
        built_rate=round(built / len(not_errors), 6) if not_errors else 0.0,
        skipped=sum(r.outcome == "skipped" for r in group),
        errors=sum(r.outcome == "error" for r in group),
        pass_at_k=_pass_at_k(counted),
        mean_input_tokens=mean([r.usage.input_tokens for r in group]),
        mean_output_tokens=mean([r.usage.output_tokens for r in group]),
        mean_latency_s=mean([r.latency_s for r in group]),
        mean_generation_s=mean(generations) if generations else None,
        mean_cost_usd=mean(costs) if costs else None,
        truncated=sum(r.truncated for r in group),
        duplicate_replies=_duplicates(group),
        **turn_fields(counted),
        mean_skill_tokens_estimate=mean([r.skill_tokens_estimate for r in group]),
        **_speed(counted, group),
    )


def _duplicates(group: list[SampleRecord]) -> int:
    seen: set[tuple[str, str]] = set()
    repeats = 0
    for record in group:
        if record.reply_digest:
            key = (record.test, record.reply_digest)
            repeats += key in seen
            seen.add(key)
    return repeats


def _speed(counted: list[SampleRecord], group: list[SampleRecord]) -> dict[str, Any]:
    if not any(r.speedup is not None for r in group):
        return {}
    passing = [r.speedup for r in counted if r.outcome == "passed" and r.speedup is not None]
    fast = {
        str(p): round(sum(s > p for s in passing) / len(counted), 6) if counted else 0.0
        for p in FAST_P
    }
    return {
        "geomean_speedup": round(geomean(passing), 6) if passing else None,
        "fast_p": fast,
        "suspicious_speedups": sum(r.speedup_suspicious for r in group),
    }


def _pass_at_k(counted: list[SampleRecord]) -> dict[str, float]:
    """pass@k for k up to the fewest samples any test has, averaged over the tests."""
    by_test: dict[str, list[bool]] = {}
    for record in counted:
        by_test.setdefault(record.test, []).append(record.outcome == "passed")
    if not by_test:
        return {}
    fewest = min(len(outcomes) for outcomes in by_test.values())
    return {
        str(k): round(sum(pass_at_k(len(o), sum(o), k) for o in by_test.values()) / len(by_test), 6)
        for k in range(1, fewest + 1)
    }


# How one sample ends when its test is parametrized over other arguments too: the kernel failed
# if any parameter set failed; else an error hides what it would have done; else it passed if
# anything ran.
_PRECEDENCE: tuple[Outcome, ...] = ("failed", "error", "passed", "skipped")


def merge_parameter_sets(records: Iterable[SampleRecord]) -> list[SampleRecord]:
    """One record per sample: a test parametrized over shapes (say) runs each sample's one reply
    and one build once per parameter set, but it is still one sample of the model."""
    samples: dict[tuple[str, str, str, int], list[SampleRecord]] = {}
    for record in records:
        key = (record.nodeid.partition("[")[0], record.model, record.condition, record.sample)
        samples.setdefault(key, []).append(record)
    merged = []
    for group in samples.values():
        deciding = min(group, key=lambda r: _PRECEDENCE.index(r.outcome))
        speedups = [s for r in group for s in r.speedups]
        update = {"built": any(r.built for r in group), **speedup_fields(speedups)}
        merged.append(deciding.model_copy(update=update))
    return merged


def _groups(
    records: Iterable[SampleRecord], by_test: bool
) -> dict[tuple[str, str, str | None], list[SampleRecord]]:
    groups: dict[tuple[str, str, str | None], list[SampleRecord]] = {}
    for record in merge_parameter_sets(records):
        key = (record.model, record.condition, record.test if by_test else None)
        groups.setdefault(key, []).append(record)
    return groups


def summarize(records: Iterable[SampleRecord]) -> list[SummaryRow]:
    """One row per (model, condition), in the order they first appear."""
    return [_row(m, c, group) for (m, c, _), group in _groups(records, by_test=False).items()]


def summarize_by_test(records: Iterable[SampleRecord]) -> list[SummaryRow]:
    """One row per (test, model, condition), sorted by test."""
    rows = [_row(m, c, group, t) for (m, c, t), group in _groups(records, by_test=True).items()]
    return sorted(rows, key=lambda row: row.test or "")


def counts_by_test(records: Iterable[SampleRecord]) -> Counts:
    """(passed, counted) per test of each (model, condition), merged over parameter sets; a
    test whose samples were all errors or skips counts (0, 0), so a lift can name it."""
    counts: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for record in merge_parameter_sets(records):
        tests = counts.setdefault((record.model, record.condition), {})
        passed, n = tests.get(record.test, (0, 0))
        if record.outcome in ("passed", "failed"):
            passed, n = passed + (record.outcome == "passed"), n + 1
        tests[record.test] = passed, n
    return counts


def gate_failures(
    summary: list[SummaryRow],
    fail_under: float | None,
    min_lift: float | None,
    baseline: str = "baseline",
    lifts: list[LiftRow] | None = None,
) -> list[str]:
    """Which (model, condition) missed a CI gate, one line each, naming the bound it used: the
    pass rate's point estimate for `fail_under`, the lift interval's lower bound for `min_lift`
    (so a lift exactly at the threshold does not pass half the time). An arm with no counted
    sample never passes."""
    failures = []
    if fail_under is not None:
        for row in summary:
            if row.condition == baseline:
                continue
            if not row.n:
                failures.append(
                    f"{row.model} {row.condition}: no counted sample (all errors or skips), "
                    f"so no pass rate to hold to --upskill-fail-under={fail_under:g}"
                )
            elif row.pass_rate < fail_under:
                failures.append(
                    f"{row.model} {row.condition}: pass rate {row.pass_rate:.0%} (the point "
                    f"estimate) is under --upskill-fail-under={fail_under:g}"
                )
    if min_lift is not None:
        for lifted in lift(summary, baseline) if lifts is None else lifts:
            if lifted.no_lift:
                failures.append(
                    f"{lifted.model} {lifted.skill}: no lift to hold to "
                    f"--upskill-min-lift={min_lift:g}: {lifted.no_lift}"
                )
            elif lifted.ci_low < min_lift:
                failures.append(
                    f"{lifted.model} {lifted.skill}: lift {lifted.lift:+.0%}, whose 95% interval's "
                    f"lower bound {lifted.ci_low:+.0%} is under --upskill-min-lift={min_lift:g}"
                )
    return failures


@dataclass(frozen=True)
class Statistics:
    """Every table of a session, computed once from its records for all the reports."""

    records: list[SampleRecord]
    summary: list[SummaryRow]
    lift: list[LiftRow]
    by_test: list[SummaryRow]
    comparisons: list[ComparisonRow] = field(default_factory=list)
    # Agent loops: each skill's lift after the first turn, beside `lift` after the last.
    lift_at_turn_1: list[LiftRow] = field(default_factory=list)


def statistics(records: list[SampleRecord], min_lift: float | None = None) -> Statistics:
    """With `min_lift` (--upskill-min-lift), the planning line plans for that lift rather than
    the observed one."""
    summary = padded(summarize(records))
    counts = counts_by_test(records)
    first: list[LiftRow] = []
    if any(record.turns > 1 for record in records):
        at_first = at_turn(records, 1)
        first = lift(summarize(at_first), counts=counts_by_test(at_first))
    return Statistics(
        records,
        summary,
        lift(summary, counts=counts, min_lift=min_lift),
        padded(summarize_by_test(records)),
        comparisons(counts, summary),
        first,
    )
