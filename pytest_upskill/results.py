"""Sample records (what the report stores) and the statistics over them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from .errors import Stage

__all__ = ["SampleRecord", "SummaryRow", "summarize", "wilson_interval"]

Outcome = Literal["passed", "failed", "error", "skipped"]


class UsageRecord(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


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
    latency_s: float = 0.0
    cached: bool = False
    cost_usd: float | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    built: bool = False
    build_cached: bool = False
    compile_only: bool = False
    directory: str = ""
    warnings: list[str] = []


class SummaryRow(BaseModel):
    """Pass rate of one (model, condition); errors and skips stay out of n."""

    model: str
    condition: str
    n: int
    passed: int
    pass_rate: float
    ci_low: float
    ci_high: float
    built: int
    skipped: int
    errors: int


def wilson_interval(passed: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a pass rate; (0, 1) when there is no sample."""
    if n == 0:
        return 0.0, 1.0
    rate = passed / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(records: Iterable[SampleRecord]) -> list[SummaryRow]:
    """One row per (model, condition), in the order they first appear."""
    groups: dict[tuple[str, str], list[SampleRecord]] = {}
    for record in records:
        groups.setdefault((record.model, record.condition), []).append(record)
    rows = []
    for (model, condition), group in groups.items():
        counted = [r for r in group if r.outcome in ("passed", "failed")]
        passed = sum(r.outcome == "passed" for r in counted)
        low, high = wilson_interval(passed, len(counted))
        rows.append(
            SummaryRow(
                model=model,
                condition=condition,
                n=len(counted),
                passed=passed,
                pass_rate=passed / len(counted) if counted else 0.0,
                ci_low=round(low, 4),
                ci_high=round(high, 4),
                built=sum(r.built for r in group),
                skipped=sum(r.outcome == "skipped" for r in group),
                errors=sum(r.outcome == "error" for r in group),
            )
        )
    return rows
