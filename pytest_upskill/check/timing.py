"""`time_callable` and `speedup`: a kernel's time, and the reference's over it."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..report.speed import suspicious_speedup
from .inputs import MakeInputs, _as_args, _shape_text
from .ops import call_watched, watching

__all__ = ["Speedup", "Timing", "speedup", "time_callable"]

_CPU_FLUSH_BYTES = 32 * 1024 * 1024  # more than the last-level cache of most machines


@dataclass(frozen=True)
class Timing:
    """Per-call times of a callable, in seconds; `median_s` is what to compare."""

    median_s: float
    samples_s: list[float]
    device: str  # "cuda" (CUDA events) or "cpu" (perf counter)
    # On CUDA: each call's time on the host between device-wide synchronizations. Much longer
    # than `median_s` means work the events on the current stream did not see (another stream).
    wall_median_s: float | None = None


@dataclass(frozen=True)
class Speedup:
    """The reference's median time over the kernel's: above 1, the kernel is faster."""

    kernel_s: float
    reference_s: float
    ratio: float
    kernel: Timing
    reference: Timing
    warnings: list[str] = field(default_factory=list)

    @property
    def suspicious(self) -> bool:
        return suspicious_speedup(self.ratio, self.warnings)


def time_callable(
    fn: Callable[..., Any],
    make_inputs: MakeInputs,
    shape: Any = None,
    *,
    warmup: int = 3,
    repeats: int = 20,
    input_sets: int = 4,
    flush_l2: bool = True,
) -> Timing:
    """The median time of `fn(*inputs)`: CUDA events when an input is on a CUDA device (caches
    flushed between calls, device synchronized around each), else the perf counter; `input_sets`
    fresh input sets are rotated so no call finds the previous one's data in cache."""
    (timing,) = _time([fn], make_inputs, shape, warmup, repeats, input_sets, flush_l2)
    return timing


def speedup(
    kernel_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    make_inputs: MakeInputs,
    shape: Any = None,
    *,
    warmup: int = 3,
    repeats: int = 20,
    input_sets: int = 4,
    flush_l2: bool = True,
) -> Speedup:
    """Time the kernel and the reference the same way, call by call in alternation, on the same
    input sets; inside an upskill test the result goes to the sample's record and the report.
    When the marker sets `forbid_ops`, one call of the kernel is watched first, untimed."""
    if watching():
        args = _as_args(make_inputs() if shape is None else make_inputs(shape))
        call_watched(kernel_fn, args, f"check.speedup (shape {_shape_text(shape)})")
    kernel, reference = _time(
        [kernel_fn, reference_fn], make_inputs, shape, warmup, repeats, input_sets, flush_l2
    )
    warnings = []
    if kernel.wall_median_s is not None and kernel.wall_median_s > 4 * kernel.median_s + 1e-4:
        warnings.append(
            f"the kernel took {kernel.wall_median_s * 1e6:.0f} us on the host but "
            f"{kernel.median_s * 1e6:.0f} us on the current stream: does it launch on another?"
        )
    result = Speedup(
        kernel_s=kernel.median_s,
        reference_s=reference.median_s,
        ratio=reference.median_s / kernel.median_s if kernel.median_s > 0 else math.inf,
        kernel=kernel,
        reference=reference,
        warnings=warnings,
    )
    from ..sample import active_sample

    sample = active_sample()
    if sample is not None:
        sample.add_speedup(result.kernel_s, result.reference_s, _shape_text(shape), warnings)
    return result


def _time(
    fns: list[Callable[..., Any]],
    make_inputs: MakeInputs,
    shape: Any,
    warmup: int,
    repeats: int,
    input_sets: int,
    flush_l2: bool,
) -> list[Timing]:
    """Time each of `fns` the same way, call by call in alternation, on the same input sets."""
    timer = _Timer(_input_sets(make_inputs, shape, input_sets, repeats), flush_l2)
    order = list(enumerate(fns))
    for i in range(warmup):
        for key, fn in order:
            timer.once(key, fn, i)
    timer.reset()
    for i in range(repeats):
        for key, fn in order if i % 2 == 0 else order[::-1]:  # none always goes first
            timer.once(key, fn, i)
    return [timer.timing(key) for key, _ in order]


def _input_sets(
    make_inputs: MakeInputs, shape: Any, count: int, repeats: int
) -> list[tuple[Any, ...]]:
    if count < 1:
        raise ValueError(f"input_sets must be at least 1, got {count}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    return [_as_args(make_inputs() if shape is None else make_inputs(shape)) for _ in range(count)]


class _Timer:
    """Times one call at a time, keeping the samples of each callable by key."""

    def __init__(self, sets: list[tuple[Any, ...]], flush_l2: bool) -> None:
        self.sets = sets
        self.cuda = any(isinstance(a, torch.Tensor) and a.is_cuda for s in sets for a in s)
        self.samples: dict[int, list[float]] = {}
        self.walls: dict[int, list[float]] = {}
        self.flush: torch.Tensor | None = None
        if flush_l2:
            if self.cuda:
                device = next(a.device for s in sets for a in s if isinstance(a, torch.Tensor))
                l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)
                size = max(2 * int(l2), 64 * 1024 * 1024)
                self.flush = torch.empty(size, dtype=torch.uint8, device=device)
            else:
                self.flush = torch.empty(_CPU_FLUSH_BYTES, dtype=torch.uint8)

    def reset(self) -> None:
        """Forget the warm-up calls."""
        self.samples.clear()
        self.walls.clear()

    def once(self, key: int, fn: Callable[..., Any], i: int) -> None:
        args = self.sets[i % len(self.sets)]
        if self.flush is not None:
            self.flush.fill_(i & 0xFF)  # a write: evicts the previous call's lines
        if not self.cuda:
            start = time.perf_counter()
            fn(*args)
            elapsed = time.perf_counter() - start
            self.samples.setdefault(key, []).append(elapsed)
            return
        begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        with _synchronized() as wall:
            begin.record()
            fn(*args)
            end.record()
        self.samples.setdefault(key, []).append(begin.elapsed_time(end) / 1e3)
        self.walls.setdefault(key, []).append(wall())

    def timing(self, key: int) -> Timing:
        samples = self.samples[key]
        walls = self.walls.get(key)
        return Timing(
            median_s=statistics.median(samples),
            samples_s=samples,
            device="cuda" if self.cuda else "cpu",
            wall_median_s=statistics.median(walls) if walls else None,
        )


@contextmanager
def _synchronized() -> Iterator[Callable[[], float]]:
    """Synchronize the whole device (every stream) before and after; yield the host's time."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    elapsed: list[float] = []
    yield lambda: elapsed[0]
    torch.cuda.synchronize()
    elapsed.append(time.perf_counter() - start)
