"""Helpers for the assertions of upskill tests: correctness against a reference, and timing.

Imported by users' tests only, never by the plugin, so it may import torch at the top.

`correct`: `assert_correct`, the trials it judges and how it catches kernels that cheat;
`timing`: `time_callable` and `speedup`; `inputs`: what both make of a test's `make_inputs`;
`ops`: the ATen operators the kernel runs in their calls, against the marker's `forbid_ops`.
"""

from __future__ import annotations

from ..report.results import SUSPICIOUS_SPEEDUP
from .correct import TOLERANCES, Trial, assert_correct, judge
from .timing import Speedup, Timing, speedup, time_callable

__all__ = [
    "SUSPICIOUS_SPEEDUP",
    "TOLERANCES",
    "Speedup",
    "Timing",
    "Trial",
    "assert_correct",
    "judge",
    "speedup",
    "time_callable",
]
