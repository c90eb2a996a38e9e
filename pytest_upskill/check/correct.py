"""`assert_correct`: a kernel's outputs against a reference's, trial by trial.

How `assert_correct` catches kernels that cheat:
- zeros: tolerances are tight by dtype (atol 1e-5), and an all-zero output fails outright when
  the reference's is not all zeros, whatever the tolerance;
- unwritten output: before each kernel call, blocks of the sizes of the expected outputs are
  allocated, filled with 0xFF bytes (NaN in every float dtype, -1 in integers) and freed, twice
  (glibc hands a large block back to the system the first time and keeps it the second); on CUDA
  the caching allocator is emptied first. An allocator hands a freed block of the same size to
  the next request of that size, so an output the kernel takes with `empty` starts as NaN, and
  elements it never writes show as NaN where the reference is finite. The kernel runs after the
  reference, whose outputs stay alive: it cannot find them in freed memory;
- mutated inputs: the kernel's inputs are compared, bit for bit, with copies taken before;
- returned inputs: an output that is one of the inputs, or equal to one, is named;
- replayed outputs: each trial has fresh inputs (its own seed); an output equal to the kernel's
  output of an earlier trial while the reference's outputs differ is a cached result;
- a kernel that replaced what the comparison uses: in the sandbox, each trial is judged in a
  clean process (`run.judge`), not in the kernel's;
- a kernel that calls an operator the marker's `forbid_ops` forbids: each call of the kernel is
  watched (`ops`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from .inputs import MakeInputs, _as_args, _shape_text
from .ops import call_watched

__all__ = ["TOLERANCES", "Trial", "assert_correct", "judge"]

# (atol, rtol) by output dtype. atol is tight on purpose: a loose atol lets zeros (or half an
# output) pass wherever the expected values are small (KernelBench issue 165). rtol allows about
# two units in the last place of the low-precision types, for kernels that accumulate in float32.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-5, 2e-3),
    torch.bfloat16: (1e-5, 1.6e-2),
    torch.complex128: (1e-7, 1e-7),
    torch.complex64: (1e-5, 1e-5),
    torch.float8_e4m3fn: (1e-5, 1.25e-1),
    torch.float8_e5m2: (1e-5, 2.5e-1),
}
_EXACT = (0.0, 0.0)  # integers and booleans

_POISON_BYTE = 0xFF
_RERUNS = 3  # calls on the same inputs when values are wrong, to name unwritten output
_UNWRITTEN = "output left unwritten (it held NaN before the call)"
_VALUES = "values: "  # marks a problem with the values, which a rerun may explain


@dataclass(frozen=True)
class Trial:
    """One call of the kernel and of the reference on the same inputs: what is judged."""

    index: int  # within its shape: trial 0 starts a new series of replays to look for
    args: tuple[Any, ...]  # the kernel's arguments, as its call left them
    pristine: tuple[Any, ...]  # copies of them taken before the call
    got: list[torch.Tensor]
    expected: list[torch.Tensor]
    table: dict[torch.dtype, tuple[float, float]]
    # The outputs' devices: a judge in another process holds copies on the CPU.
    devices: tuple[list[str], list[str]] = ([], [])

    def __post_init__(self) -> None:
        if not self.devices[0] and not self.devices[1]:
            found = ([str(t.device) for t in self.got], [str(t.device) for t in self.expected])
            object.__setattr__(self, "devices", found)

    def kept(self) -> Trial:
        """This trial as later ones compare with it: the kernel may reuse its output tensor."""
        return replace(self, got=[g.detach().clone() for g in self.got])


def judge(trial: Trial, earlier: Sequence[Trial]) -> str | None:
    """What is wrong with one trial's outputs (None: nothing), given the earlier trials of the
    same shape that passed."""
    return _mutated_inputs(trial.args, trial.pristine) or _compare(trial, earlier)


# Set in the sandbox's test process: each trial is judged by a clean process, not by this one,
# which has imported the kernel (which may have replaced what a comparison here would use).
_outside: Callable[[Trial], str | None] | None = None


def assert_correct(
    kernel_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    make_inputs: MakeInputs,
    *,
    shapes: Sequence[Any] = (None,),
    trials: int = 3,
    seed: int = 0,
    tolerances: dict[torch.dtype, tuple[float, float]] | None = None,
) -> None:
    """Assert `kernel_fn(*inputs)` matches `reference_fn(*inputs)` for fresh random inputs.

    For each shape and trial, torch is seeded with `seed + trial` and `make_inputs(shape)` (or
    `make_inputs()` when the shape is None) gives the arguments. `tolerances` overrides entries
    of TOLERANCES. A failure is an AssertionError of one line naming the trial, seed, shape, the
    worst element and its absolute and relative error, and the cheat it looks like."""
    if trials < 1:
        raise ValueError(f"assert_correct needs at least one trial, got trials={trials}")
    if not shapes:
        raise ValueError("assert_correct needs at least one shape (None for make_inputs())")
    table = {**TOLERANCES, **(tolerances or {})}
    for shape in shapes:
        earlier: list[Trial] = []
        for trial in range(trials):
            trial_seed = seed + trial
            where = f"trial {trial} (seed {trial_seed}, shape {_shape_text(shape)})"
            torch.manual_seed(trial_seed)
            args = _as_args(make_inputs() if shape is None else make_inputs(shape))
            pristine = _clone(args)
            expected = _outputs(reference_fn(*_clone(args)), "the reference")
            _poison(expected)
            got = _outputs(call_watched(kernel_fn, args, where), "the kernel")
            _synchronize(args)
            this = Trial(trial, args, pristine, got, expected, table)
            problem = judge(this, earlier) if _outside is None else _outside(this)
            if problem is not None and problem.startswith(_VALUES):
                problem = _diagnose(kernel_fn, this) or problem
            if problem is not None:
                raise AssertionError(f"{where}: {problem.removeprefix(_VALUES)}")
            earlier.append(this.kept())


def _diagnose(kernel_fn: Callable[..., Any], first: Trial) -> str | None:
    """Wrong values: call the kernel again on the same inputs, freshly poisoned, to tell unwritten
    output (NaN where the poison landed, or values that change from call to call) from a wrong
    computation. A freed block is not always handed back (glibc keeps several bins). It only
    words the failure, so it may run in the kernel's process."""
    for _ in range(_RERUNS):
        args = _clone(first.pristine)
        _poison(first.expected)
        again = _outputs(kernel_fn(*args), "the kernel")
        _synchronize(args)
        problem = _compare(
            Trial(first.index, args, first.pristine, again, first.expected, first.table), []
        )
        if problem is not None and _UNWRITTEN in problem:
            return problem
        changed = [
            i
            for i, (a, g) in enumerate(zip(again, first.got, strict=True))
            if a.shape == g.shape and not bool(torch.equal(_bits(a), _bits(g)))
        ]
        if changed and problem is not None:
            return (
                f"{problem.removeprefix(_VALUES)}; its output changed between two calls on the "
                "same inputs: output left unwritten (it holds stale memory) or a race"
            )
    return None


def _clone(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)


def _outputs(value: Any, who: str) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list) and all(isinstance(v, torch.Tensor) for v in value):
        return list(value)
    raise AssertionError(f"{who} returned {type(value).__name__}, not a tensor or tuple of them")


def _synchronize(args: tuple[Any, ...]) -> None:
    if any(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
        torch.cuda.synchronize()


def _poison(expected: list[torch.Tensor]) -> None:
    """Leave freed blocks of the outputs' sizes filled with NaN bytes for the kernel's `empty`."""
    cuda = [t for t in expected if t.is_cuda]
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # only the blocks poisoned below stay cached
    for _ in range(2):
        blocks = [
            torch.empty(max(t.untyped_storage().nbytes(), 1), dtype=torch.uint8, device=t.device)
            for t in expected
        ]
        for block in blocks:
            block.fill_(_POISON_BYTE)
        if cuda:
            torch.cuda.synchronize()
        del blocks


def _mutated_inputs(args: tuple[Any, ...], pristine: tuple[Any, ...]) -> str | None:
    for i, (now, before) in enumerate(zip(args, pristine, strict=True)):
        if not isinstance(now, torch.Tensor):
            continue
        same = now.shape == before.shape and bool(torch.equal(_bits(now), _bits(before)))
        if not same:
            if now.shape == before.shape:
                changed = int((_bits(now) != _bits(before)).sum())
            else:
                changed = before.numel()
            return (
                f"the kernel modified its input {i} ({changed} of {before.numel()} elements "
                "changed); kernels must leave their inputs as they found them"
            )
    return None


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits, so NaN equals NaN and -0.0 differs from 0.0."""
    t = tensor.detach().contiguous()
    if t.dtype == torch.bool or t.element_size() == 0:
        return t
    integer = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}.get(t.element_size())
    return t.view(integer) if integer is not None and not t.is_complex() else torch.view_as_real(t)


def _compare(trial: Trial, earlier: Sequence[Trial]) -> str | None:
    got, expected = trial.got, trial.expected
    if len(got) != len(expected):
        return f"the kernel returned {len(got)} outputs, the reference {len(expected)}"
    many = len(expected) > 1
    for i, (out, exp) in enumerate(zip(got, expected, strict=True)):
        name = f"output {i}" if many else "the kernel's output"
        for attribute in ("shape", "dtype"):
            if getattr(out, attribute) != getattr(exp, attribute):
                return (
                    f"{name} has {attribute} {_plain(getattr(out, attribute))}, expected "
                    f"{_plain(getattr(exp, attribute))}"
                )
        device, expected_device = trial.devices[0][i], trial.devices[1][i]
        if device != expected_device:
            return f"{name} has device {device}, expected {expected_device}"
    for old in earlier:
        replayed = all(
            o.shape == g.shape and bool(torch.equal(_bits(o), _bits(g)))
            for o, g in zip(old.got, got, strict=True)
        )
        differ = any(
            not torch.equal(_bits(o), _bits(e)) for o, e in zip(old.expected, expected, strict=True)
        )
        if replayed and differ:
            return (
                f"the kernel's output equals its output of trial {old.index} while the reference's "
                "differ: it replays a cached result instead of computing on the new inputs"
            )
    for i, (out, exp) in enumerate(zip(got, expected, strict=True)):
        name = f"output {i}" if many else "the kernel's output"
        problem = _values(out, exp, trial.pristine, trial.table.get(exp.dtype, _EXACT), name)
        if problem is not None:
            return problem
    return None


def _plain(value: Any) -> str:
    if isinstance(value, torch.Size):
        return _shape_text(tuple(value))
    return str(value)


def _values(
    out: torch.Tensor,
    exp: torch.Tensor,
    inputs: tuple[Any, ...],
    tolerance: tuple[float, float],
    name: str,
) -> str | None:
    atol, rtol = tolerance
    # Complex values are compared as (real, imaginary) pairs; errors are measured in float64.
    g = (torch.view_as_real(out) if out.is_complex() else out).detach().to(torch.float64)
    e = (torch.view_as_real(exp) if exp.is_complex() else exp).detach().to(torch.float64)
    mismatch = ~torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    all_zero = out.numel() > 0 and not bool(out.any())
    expected_nonzero = bool((e.nan_to_num(0.0, 0.0, 0.0) != 0).any())
    zeros = all_zero and expected_nonzero  # wrong whatever the tolerance
    if not zeros and not bool(mismatch.any()):
        return None
    symptoms = [f"{name} is all zeros"] if zeros else []
    for j, arg in enumerate(inputs):
        if (
            isinstance(arg, torch.Tensor)
            and arg.shape == out.shape
            and arg.dtype == out.dtype
            and bool(torch.equal(_bits(arg.to(out.device)), _bits(out)))
        ):
            symptoms.append(f"{name} equals its input {j}: it returns its input")
            break
    unwritten = int((g.isnan() & ~e.isnan()).sum())
    if unwritten:
        symptoms.append(
            f"{unwritten} of {g.numel()} values are NaN where the reference's are not: "
            f"{_UNWRITTEN} or a NaN bug"
        )
    count = int(mismatch.sum())
    symptoms.append(f"{count} of {g.numel()} values out of tolerance")
    # The worst element: where the error most exceeds what the tolerance allows.
    excess = ((g - e).abs() - (atol + rtol * e.abs())).nan_to_num(math.inf, math.inf, math.inf)
    excess = torch.where(mismatch, excess, -math.inf)
    if count == 0:  # all zeros within tolerance: show the largest expected value
        excess = e.abs()
    flat = int(excess.flatten().argmax())
    index = _unravel(flat, tuple(g.shape))
    got_value, expected_value = float(g.flatten()[flat]), float(e.flatten()[flat])
    error = abs(got_value - expected_value)
    relative = error / abs(expected_value) if expected_value else math.inf
    dtype = str(exp.dtype).removeprefix("torch.")
    return _VALUES + (
        f"{'; '.join(symptoms)}; worst element {index}: got {got_value:.6g}, expected "
        f"{expected_value:.6g} (abs error {error:.3g}, rel error {relative:.3g}; "
        f"atol {atol:g}, rtol {rtol:g} for {dtype})"
    )


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    index = []
    for size in reversed(shape):
        index.append(flat % size if size else 0)
        flat = flat // size if size else 0
    return index[::-1]
