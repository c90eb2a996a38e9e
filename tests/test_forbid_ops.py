"""`forbid_ops`: the ATen operators a kernel runs while the check helpers call it."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from conftest import plant
from pytest_upskill.check.ops import forbidden_op, ran_ops
from pytest_upskill.generate.prompt import build_prompt
from pytest_upskill.task import task_from_marker

X = torch.randn(8, 16)


def _in_a_thread() -> torch.Tensor:
    """A softmax reached by name, from another thread: no text check and no thread-local
    profiler sees it."""
    out: list[torch.Tensor] = []
    worker = threading.Thread(target=lambda: out.append(getattr(torch, "soft" + "max")(X, -1)))
    worker.start()
    worker.join()
    return out[0]


def test_operators_from_any_thread_and_from_cpp_are_seen() -> None:
    names, result = ran_ops(_in_a_thread)
    assert torch.equal(result, torch.softmax(X, -1))
    assert {"aten::softmax", "aten::_softmax"} <= set(names)
    # layer_norm's C++ calls native_layer_norm: a call made from C++ is seen too.
    names, _ = ran_ops(lambda: torch.nn.functional.layer_norm(X, (16,)))
    assert "aten::native_layer_norm" in names
    assert forbidden_op(names, (r"aten::native_layer_norm$",)) == (
        "the kernel ran the ATen operator(s) aten::native_layer_norm "
        "('aten::native_layer_norm$'), which forbid_ops forbids: it must compute the result itself"
    )


def test_only_aten_operators_are_matched_and_the_harness_runs_none() -> None:
    names, _ = ran_ops(lambda: None)
    assert not [name for name in names if name.startswith("aten::")]
    # The kernel's own op may be named like what it must not call.
    assert forbidden_op(["_row_softmax_abc::row_softmax", "aten::empty"], ("softmax",)) is None


def test_a_kernel_that_stops_the_observer_fails() -> None:
    def stops_it() -> torch.Tensor:
        torch._C._profiler._disable_execution_trace_observer()
        return torch.softmax(X, -1)

    with pytest.raises(AssertionError, match="the execution trace observer stopped"):
        ran_ops(stops_it)


def test_the_prompt_names_the_forbidden_operators() -> None:
    task = task_from_marker(
        ("Write softmax.",), {"forbid_ops": [r"aten::_?softmax"]}, "softmax", Path(__file__)
    )
    assert "aten::_?softmax" in build_prompt(task, None).system
    plain = task_from_marker(("Write softmax.",), {}, "softmax", Path(__file__))
    assert "ATen" not in build_prompt(plain, None).system


SUITE = """
import pytest
import torch
from pytest_upskill import check

def make_inputs():
    return (torch.randn(8, 33),)

def reference(x):
    return torch.softmax(x, dim=-1)

def mark(solution):
    return pytest.mark.upskill(
        "Softmax of each row of a 2-D float32 tensor. Expose row_softmax(x).",
        name="row_softmax", backend="cpu", reference=f"solutions/{solution}",
        forbid_ops=["softmax"],
    )

def run(kernel, helper):
    if helper == "assert_correct":
        check.assert_correct(kernel.row_softmax, reference, make_inputs)
    else:
        check.speedup(kernel.row_softmax, reference, make_inputs, repeats=2, warmup=1)

helpers = pytest.mark.parametrize("helper", ["assert_correct", "speedup"])

@helpers
@mark("row_softmax")
def test_honest(kernel, helper):
    run(kernel, helper)

@helpers
@mark("by_name")
def test_by_name(kernel, helper):
    run(kernel, helper)

@helpers
@mark("in_cpp")
def test_in_cpp(kernel, helper):
    run(kernel, helper)
"""


@pytest.fixture
def cheats(reference: Path) -> Path:
    """Two cheating copies of the row softmax: one calls torch's softmax by a name no text
    check sees, from Python; the other from C++, behind a macro, on a line a digit separator
    used to hide."""
    for name in ("by_name", "in_cpp"):
        shutil.copytree(reference, reference.parent / name)
    plant(
        reference.parent / "by_name",
        "torch-ext/row_softmax/__init__.py",
        "return ops.row_softmax(x)",
        'return getattr(torch, "soft" + "max")(x, -1)',
    )
    plant(
        reference.parent / "in_cpp",
        "kernel_src/row_softmax.cpp",
        "#include <c10/util/Exception.h>\n",
        "#include <c10/util/Exception.h>\n"
        "#include <ATen/ops/_softmax.h>\n"
        "#define SOFT at::_softmax\n",
    )
    plant(
        reference.parent / "in_cpp",
        "kernel_src/row_softmax.cpp",
        "  const at::Tensor input = x.contiguous();\n",
        "  const int64_t n = 1'000; if (n > 0) return SOFT(x, 1, false);\n"
        "  const at::Tensor input = x.contiguous();\n",
    )
    return reference.parent


def test_cheats_fail_at_check_naming_the_operator(
    pytester: pytest.Pytester, cheats: Path, upskill_args: list[str]
) -> None:
    """Each cheat, under each helper, fails at check with the operator named (read from the
    JSON report); the honest kernel passes: its own op is not ATen, and the reference's softmax
    runs outside the kernel's call."""
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--upskill-model=oracle", "--upskill-report=r.json", *upskill_args)
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert len(samples) == 6, result.stdout.str()
    for sample in samples:
        if sample["test"] == "test_honest":
            assert sample["outcome"] == "passed", (sample["nodeid"], sample["reason"])
            continue
        where = (sample["nodeid"], sample["reason"])
        assert (sample["outcome"], sample["stage"]) == ("failed", "check"), where
        assert "aten::_softmax ('softmax')" in sample["reason"], where
    result.assert_outcomes(passed=2, failed=4)
