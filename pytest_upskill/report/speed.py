"""Speedups in the report: what `check.speedup` records for a sample, and the one rule that
flags a speedup as too good to be true."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from .stats import geomean

__all__ = [
    "FAST_P",
    "SUSPICIOUS_SPEEDUP",
    "SpeedupRecord",
    "speedup_fields",
    "suspicious_speedup",
]

SUSPICIOUS_SPEEDUP = 10.0  # a kernel this much faster than its reference is flagged
FAST_P = (0, 1, 2)  # fast_p: the share of samples correct and more than p times as fast


class SpeedupRecord(BaseModel):
    """One `check.speedup` call of a sample's test: median times in seconds."""

    shape: str = "default"
    kernel_s: float
    reference_s: float
    warnings: list[str] = []


def suspicious_speedup(ratio: float, warnings: Sequence[str]) -> bool:
    """Whether a speedup (reference time over kernel time) looks like cheating: not finite (a
    kernel timed at 0), over SUSPICIOUS_SPEEDUP, or timed with a warning (say, work on a stream
    the timing did not see). The only copy of the rule: every flag comes from it, and
    `check.Speedup.suspicious` too."""
    return not math.isfinite(ratio) or ratio > SUSPICIOUS_SPEEDUP or bool(warnings)


def speedup_fields(speedups: list[SpeedupRecord]) -> dict[str, Any]:
    """The speedup fields of a sample's record: geometric means over its measurements (so
    speedup = reference_s / kernel_s), and whether it looks too good to be true."""
    if not speedups:
        return {"speedups": []}
    kernel_s = geomean([s.kernel_s for s in speedups])
    reference_s = geomean([s.reference_s for s in speedups])
    ratio = reference_s / kernel_s if kernel_s > 0 else math.inf
    return {
        "speedup": round(ratio, 6) if math.isfinite(ratio) else None,
        "kernel_s": kernel_s,
        "reference_s": reference_s,
        "speedup_suspicious": suspicious_speedup(ratio, [w for s in speedups for w in s.warnings]),
        "speedups": speedups,
    }
