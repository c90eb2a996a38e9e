"""pytest_upskill.check: correctness against a reference, timing, and speedups in the report."""

from __future__ import annotations

import fnmatch
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from conftest import plant
from pytest_upskill.check import TOLERANCES, assert_correct, speedup, time_callable
from pytest_upskill.report.results import (
    SampleRecord,
    SpeedupRecord,
    merge_parameter_sets,
    speedup_fields,
    summarize,
)

KERNEL = "kernel_src/row_softmax.cpp"

# Each cheat as a plant in the row softmax reference: (file, old, new).
CHEATS: dict[str, list[tuple[str, str, str]]] = {
    "zeros": [
        (KERNEL, "  return output;", "  std::fill(out, out + rows * cols, 0.f);\n  return output;")
    ],
    "returns_input": [(KERNEL, "  return output;", "  return x;")],
    "half": [
        (KERNEL, "for (int64_t r = 0; r < rows; ++r)", "for (int64_t r = 0; r < rows / 2; ++r)")
    ],
    "mutates_input": [
        (KERNEL, "at::Tensor output = at::empty_like(input);", "at::Tensor output = input;")
    ],
    "aten": [
        (
            KERNEL,
            "#include <ATen/ops/empty_like.h>",
            "#include <ATen/ops/empty_like.h>\n#include <ATen/ops/softmax.h>",
        ),
        (
            KERNEL,
            "  const at::Tensor input = x.contiguous();",
            "  return at::softmax(x, -1);\n  const at::Tensor input = x.contiguous();",
        ),
    ],
    "caches": [
        (
            KERNEL,
            "  const at::Tensor input = x.contiguous();",
            "  static at::Tensor cached;\n  if (cached.defined()) return cached;\n  const at::Tensor input = x.contiguous();",
        ),
        (KERNEL, "  return output;", "  cached = output;\n  return output;"),
    ],
}

# What each failure must say: the cheat's symptom.
SYMPTOMS = {
    "zeros": "*trial 0 (seed 0, shape (8, 33)): the kernel's output is all zeros; * out of tolerance; worst element [[]*]: got 0, expected *abs error*rel error*",
    "returns_input": "*trial 0 (seed 0, shape (8, 33)): the kernel's output equals its input 0: it returns its input*",
    # Poison shows as NaN where the allocator hands the freed block back, else the rerun shows
    # the output changing: both name the cheat.
    "half": "*trial 0 (seed 0, shape (8, 33)): * output left unwritten*",
    "mutates_input": "*trial 0 (seed 0, shape (8, 33)): the kernel modified its input 0 (264 of 264 elements changed)*",
    "aten": "kernel_src/row_softmax.cpp:15 uses 'at::softmax': the task forbids 'at::softmax', 'torch::softmax', *",
    "caches": "*trial 1 (seed 1, shape (8, 33)): the kernel's output equals its output of trial 0 while the reference's differ: it replays a cached result*",
}

CHEAT_TESTS = """
import pytest
import torch

from pytest_upskill.check import assert_correct

FORBID = ["at::softmax", "torch::softmax", r"\\.softmax\\s*\\("]


def make_inputs(shape):
    return (torch.randn(*shape) * 4,)


def reference(x):
    return torch.softmax(x, dim=-1)
"""

CHEAT_TEST = """

@pytest.mark.upskill(
    "Softmax of each row of a 2-D float32 tensor. Expose row_softmax(x).",
    name="row_softmax", backend="cpu", reference="solutions/{name}", forbid=FORBID,
)
def test_{name}(kernel):
    assert_correct(kernel.row_softmax, reference, make_inputs, shapes=[(8, 33), (3, 1000)])
"""


def test_planted_cheats_fail_with_their_symptom_and_the_honest_kernel_passes(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    source = CHEAT_TESTS + CHEAT_TEST.format(name="row_softmax")
    for name, plants in CHEATS.items():
        shutil.copytree(reference, reference.parent / name)
        for relative, old, new in plants:
            plant(reference.parent / name, relative, old, new)
        source += CHEAT_TEST.format(name=name)
    pytester.makepyfile(test_cheats=source)
    result = pytester.runpytest("--upskill-model=oracle", *upskill_args, "--upskill-report=r.json")
    result.assert_outcomes(passed=1, failed=len(CHEATS))
    samples = {s["test"]: s for s in json.loads((pytester.path / "r.json").read_text())["samples"]}
    assert samples["test_row_softmax"]["outcome"] == "passed"
    for name, symptom in SYMPTOMS.items():
        record = samples[f"test_{name}"]
        assert record["outcome"] == "failed", name
        assert record["stage"] == ("policy" if name == "aten" else "check"), name
        assert fnmatch.fnmatchcase(record["reason"], symptom), (name, record["reason"])


# Direct checks on plain torch functions.


def rows(shape: tuple[int, ...]) -> tuple[torch.Tensor]:
    return (torch.randn(*shape) * 4,)


def softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def failure(kernel_fn: Callable[..., object], **kwargs: object) -> str:
    with pytest.raises(AssertionError) as info:
        assert_correct(kernel_fn, softmax, rows, shapes=[(8, 33)], **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_an_honest_kernel_passes_every_shape_and_trial() -> None:
    calls: list[tuple[int, ...]] = []

    def kernel(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return torch.softmax(x.clone(), dim=-1)

    assert_correct(kernel, softmax, rows, shapes=[(8, 33), (2, 7)], trials=2)
    assert calls == [(8, 33), (8, 33), (2, 7), (2, 7)]


def test_a_wrong_value_names_trial_seed_shape_worst_element_and_errors() -> None:
    def kernel(x: torch.Tensor) -> torch.Tensor:
        y = torch.softmax(x, dim=-1)
        if float(x[0, 0]) != 0.0:
            y[2, 5] += 0.5
        return y

    message = failure(kernel, seed=7)
    assert message.startswith("trial 0 (seed 7, shape (8, 33)): 1 of 264 values out of tolerance")
    assert "worst element [2, 5]: got " in message
    assert "abs error 0.5, rel error " in message
    assert "atol 1e-05, rtol 1e-05 for float32" in message
    assert "\n" not in message


def test_a_loose_error_fails_and_a_tolerance_override_lets_it_pass() -> None:
    def off_by_a_little(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=-1) * 1.001

    assert "values out of tolerance" in failure(off_by_a_little)
    assert_correct(
        off_by_a_little, softmax, rows, shapes=[(8, 33)], tolerances={torch.float32: (0, 2e-3)}
    )
    assert TOLERANCES[torch.float32] == (1e-5, 1e-5)  # the override changed no default


def test_zeros_fail_even_within_a_loose_tolerance() -> None:
    def small(shape: tuple[int, ...]) -> tuple[torch.Tensor]:
        return (torch.randn(*shape) * 1e-4,)

    with pytest.raises(AssertionError, match="the kernel's output is all zeros"):
        assert_correct(
            torch.zeros_like,
            lambda x: x * 1.0,
            small,
            shapes=[(4, 4)],
            tolerances={torch.float32: (1e-2, 1e-2)},
        )


def test_nan_and_inf_must_sit_where_the_reference_has_them() -> None:
    def with_specials(shape: tuple[int, ...]) -> tuple[torch.Tensor]:
        x = torch.randn(*shape)
        x[0, 0], x[1, 1] = float("nan"), float("inf")
        return (x,)

    assert_correct(lambda x: x * 2, lambda x: x * 2, with_specials, shapes=[(4, 4)])

    def moved(x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        y[0, 0], y[2, 2] = 1.0, float("nan")
        return y

    with pytest.raises(AssertionError, match=r"1 of 16 values are NaN .* worst element \["):
        assert_correct(moved, lambda x: x * 2, with_specials, shapes=[(4, 4)])


def test_shape_dtype_and_output_count_are_checked() -> None:
    assert "has shape (8, 32), expected (8, 33)" in failure(lambda x: softmax(x)[:, :32])
    assert "has dtype torch.float64, expected torch.float32" in failure(
        lambda x: softmax(x).double()
    )
    assert "returned 2 outputs, the reference 1" in failure(lambda x: (softmax(x), x))
    assert "the kernel returned NoneType, not a tensor" in failure(lambda x: None)


def test_a_replayed_output_fails_on_the_second_trial() -> None:
    cache: list[torch.Tensor] = []

    def replay(x: torch.Tensor) -> torch.Tensor:
        cache.append(cache[0] if cache else softmax(x))
        return cache[-1]

    assert failure(replay).startswith(
        "trial 1 (seed 1, shape (8, 33)): the kernel's output equals its output of trial 0"
    )


def test_a_mutated_input_fails_even_when_the_output_is_right() -> None:
    def in_place(x: torch.Tensor) -> torch.Tensor:
        y = softmax(x)
        x[0, 0] = 0.0
        return y

    assert "the kernel modified its input 0 (1 of 264 elements changed)" in failure(in_place)


def test_the_reference_sees_pristine_inputs_even_if_it_mutates_them() -> None:
    def mutating_reference(x: torch.Tensor) -> torch.Tensor:
        return x.mul_(2)

    assert_correct(lambda x: x * 2, mutating_reference, rows, shapes=[(4, 4)])


def test_an_output_the_kernel_leaves_unwritten_shows_as_nan() -> None:
    def half(x: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x)
        y[: x.shape[0] // 2] = softmax(x[: x.shape[0] // 2])
        return y

    assert "values are NaN where the reference's are not: output left unwritten" in failure(half)


def test_time_callable_measures_the_callable_and_rotates_fresh_inputs() -> None:
    made: list[int] = []

    def inputs(shape: int) -> tuple[float]:
        made.append(shape)
        return (0.002,)

    timing = time_callable(time.sleep, inputs, 5, warmup=1, repeats=5, input_sets=3)
    assert made == [5, 5, 5]
    assert len(timing.samples_s) == 5
    assert timing.device == "cpu"
    assert 0.002 <= timing.median_s < 0.05
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        time_callable(time.sleep, inputs, 5, repeats=0)


def test_speedup_orders_a_slow_and_a_fast_callable() -> None:
    def slow(x: float) -> None:
        time.sleep(x * 4)

    def fast(x: float) -> None:
        time.sleep(x)

    # Sleeps long enough that a busy machine's overshoot (a millisecond or so) keeps the order.
    result = speedup(fast, slow, lambda: (0.005,), repeats=6, flush_l2=False)
    assert 2 < result.ratio < 6
    assert result.ratio == pytest.approx(result.reference_s / result.kernel_s)
    assert result.kernel.samples_s
    assert result.reference.samples_s
    inverse = speedup(slow, fast, lambda: (0.005,), repeats=6, flush_l2=False)
    assert inverse.ratio < 0.5


SPEEDUP_TESTS = """
import time

import pytest
import torch

from pytest_upskill.check import speedup


def make_inputs(shape):
    return (torch.randn(*shape),)


@pytest.mark.upskill(
    "Softmax of each row of a 2-D float32 tensor. Expose row_softmax(x).",
    name="row_softmax", backend="cpu", reference="solutions/row_softmax",
)
def test_fair(kernel):
    def slower_by_half(x):
        kernel.row_softmax(x)
        time.sleep(0.003)

    def timed_kernel(x):
        time.sleep(0.002)  # the sleeps make the ratio about 1.5 on a loaded machine too
        return kernel.row_softmax(x)

    result = speedup(timed_kernel, slower_by_half, make_inputs, (4, 8), repeats=5, flush_l2=False)
    assert 1.2 < result.ratio < 1.8


@pytest.mark.upskill(
    "Softmax of each row of a 2-D float32 tensor. Expose row_softmax(x).",
    name="row_softmax", backend="cpu", reference="solutions/row_softmax",
)
def test_too_good(kernel):
    speedup(kernel.row_softmax, lambda x: time.sleep(0.05), make_inputs, (4, 8), repeats=3,
            flush_l2=False)


def test_outside_upskill():
    assert speedup(torch.relu, torch.relu, make_inputs, (4, 4), repeats=2).ratio > 0
"""


def test_a_samples_speedup_reaches_the_reports_with_geomean_and_fast_p(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(SPEEDUP_TESTS)
    result = pytester.runpytest(
        "--upskill-model=oracle",
        *upskill_args,
        "--upskill-report=r.json",
        "--upskill-markdown=r.md",
        "--upskill-html=r.html",
    )
    result.assert_outcomes(passed=3)
    report = json.loads((pytester.path / "r.json").read_text())
    samples = {s["test"]: s for s in report["samples"]}
    fair, too_good = samples["test_fair"], samples["test_too_good"]
    assert 1.2 < fair["speedup"] < 1.8
    assert not fair["speedup_suspicious"]
    assert fair["speedup"] == pytest.approx(fair["reference_s"] / fair["kernel_s"], rel=1e-4)
    assert fair["speedups"][0]["shape"] == "(4, 8)"
    assert too_good["speedup"] > 10
    assert too_good["speedup_suspicious"]
    (row,) = report["summary"]
    geomean = (fair["speedup"] * too_good["speedup"]) ** 0.5
    assert row["geomean_speedup"] == pytest.approx(geomean, rel=1e-4)
    assert row["fast_p"] == {"0": 1.0, "1": 1.0, "2": 0.5}
    assert row["suspicious_speedups"] == 1
    result.stdout.fnmatch_lines(
        [
            "model * speedup  fast_0  fast_1  fast_2",
            "oracle * 2/2 * [0-9]*x *100% *100% *50%",
            "upskill: suspicious speedup *x in test_*.py::test_too_good[[]oracle-baseline-0[]]: check for cheating",
        ]
    )
    assert "suspicious speedup" in (pytester.path / "r.md").read_text()
    assert "Suspicious speedups" in (pytester.path / "r.html").read_text()


def test_sessions_without_a_speedup_print_the_table_as_before(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    from conftest import ROW_SOFTMAX_TEST

    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest("--upskill-model=oracle", *upskill_args, "--upskill-report=r.json")
    result.assert_outcomes(passed=1)
    header = next(line for line in result.outlines if line.startswith("model "))
    assert header.split() == [
        "model",
        "condition",
        "passed",
        "rate",
        "95%",
        "CI",
        "built",
        "skipped",
        "errors",
        "mean",
        "tokens",
        "out",
        "cost",
    ]
    (row,) = json.loads((pytester.path / "r.json").read_text())["summary"]
    assert row["geomean_speedup"] is None
    assert row["fast_p"] == {}


def test_speedups_merge_over_parameter_sets_and_count_only_passing_samples() -> None:
    def record(nodeid: str, outcome: str, *ratios: float) -> SampleRecord:
        speedups = [SpeedupRecord(kernel_s=1.0, reference_s=r) for r in ratios]
        return SampleRecord(
            nodeid=nodeid,
            test=nodeid.partition("[")[0],
            model="m",
            condition="baseline",
            sample=0,
            outcome=outcome,  # type: ignore[arg-type]
            stage="check",
            **speedup_fields(speedups),
        )

    records = [
        record("test_a[m-baseline-0-small]", "passed", 2.0),
        record("test_a[m-baseline-0-large]", "passed", 8.0),
        record("test_b[m-baseline-0]", "failed", 20.0),  # fast but wrong: no credit
        record("test_c[m-baseline-0]", "passed"),  # measured no speedup
    ]
    merged = {r.test: r for r in merge_parameter_sets(records)}
    assert merged["test_a"].speedup == pytest.approx(4.0)
    assert len(merged["test_a"].speedups) == 2
    assert merged["test_b"].speedup_suspicious
    assert merged["test_c"].speedup is None
    (row,) = summarize(records)
    assert row.n == 3
    assert row.geomean_speedup == pytest.approx(4.0)
    assert row.fast_p == {
        "0": pytest.approx(1 / 3),
        "1": pytest.approx(1 / 3),
        "2": pytest.approx(1 / 3),
    }
    assert row.suspicious_speedups == 1
