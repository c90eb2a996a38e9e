"""Stage `policy`: kernel-builder's binding rules and the compiler-flag allow-list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import ROW_SOFTMAX_TEST
from pytest_upskill.errors import SampleFailed
from pytest_upskill.policy import check_project, check_task_rules, cuda_flags, cxx_flags, forbidden
from pytest_upskill.project import Project, load_project, write_project
from pytest_upskill.task import Task, TaskInvalid, task_from_marker

BUILD_TOML = """
[general]
name = "relu"
version = 1
edition = 5
backends = ["cuda", "cpu"]

[torch]
src = ["torch-ext/torch_binding.cpp", "torch-ext/torch_binding.h"]
{torch_flags}

[kernel.relu]
backend = "cuda"
depends = ["torch"]
src = ["relu_cuda/relu.cu", "relu_cuda/host.cpp"]
{cuda_flags}

[kernel.relu_cpu]
backend = "cpu"
depends = ["torch"]
src = ["relu_cpu/relu.cpp"]
"""

BINDING = """\
#include <torch/library.h>

#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("relu(Tensor! out, Tensor input) -> ()");
#if defined(CUDA_KERNEL)
  ops.impl("relu", torch::kCUDA, &relu);
#endif
}

TORCH_LIBRARY_IMPL_EXPAND(TORCH_EXTENSION_NAME, CPU, ops) {}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
"""

# kernel-builder's own registration.h, which projects may carry: its definitions are not uses.
REGISTRATION_H = """\
#pragma once
#include <Python.h>
#define _CONCAT(A, B) A##B
#define CONCAT(A, B) _CONCAT(A, B)
#define TORCH_LIBRARY_EXPAND(NAME, MODULE) TORCH_LIBRARY(NAME, MODULE)
#define REGISTER_EXTENSION(NAME)                                               \\
  PyMODINIT_FUNC CONCAT(PyInit_, NAME)() {                                     \\
    static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "x", nullptr, 0, nullptr}; \\
    return PyModule_Create(&module);                                           \\
  }
"""


def project(
    tmp_path: Path,
    *,
    torch_flags: str = "",
    kernel_flags: str = "",
    files: dict[str, str] | None = None,
) -> Project:
    sources = {
        "build.toml": BUILD_TOML.format(torch_flags=torch_flags, cuda_flags=kernel_flags),
        "torch-ext/torch_binding.cpp": BINDING,
        "torch-ext/torch_binding.h": "#pragma once\n#include <torch/torch.h>\n",
        "torch-ext/registration.h": REGISTRATION_H,
        "torch-ext/relu/__init__.py": "from ._ops import ops\n",
        "relu_cuda/relu.cu": "// Kernel-builder, not torch/extension.h or PYBIND11_MODULE.\n",
        "relu_cuda/host.cpp": '/* no pybind11 */ const char* s = "PyInit_ in a string";\n',
        "relu_cpu/relu.cpp": "",
    }
    sources.update(files or {})
    root = tmp_path / "p"
    return load_project(root, write_project(sources, root), "relu")


def test_a_kernel_builder_project_keeps_the_rules(tmp_path: Path) -> None:
    check_project(project(tmp_path), "cuda", "kernel-builder")


@pytest.mark.parametrize(
    ("path", "text", "reason"),
    [
        (
            "torch-ext/torch_binding.h",
            "#pragma once\n  #  include <torch/extension.h>\n",
            "torch-ext/torch_binding.h:2: includes torch/extension.h",
        ),
        (
            "relu_cuda/relu.cu",
            '// fine\n#include "pybind11/pybind11.h"\n',
            "relu_cuda/relu.cu:2: includes pybind11/pybind11.h",
        ),
        (
            "torch-ext/torch_binding.cpp",
            "/* a\n comment */\nPYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {}\n",
            "torch-ext/torch_binding.cpp:3: defines a pybind11 module",
        ),
        (
            "relu_cuda/host.cpp",
            'extern "C" PyObject* PyInit__relu() { return nullptr; }\n',
            "relu_cuda/host.cpp:1: defines a Python module init",
        ),
        (
            "torch-ext/torch_binding.cpp",
            BINDING.replace("TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME", "TORCH_LIBRARY(my_relu"),
            "torch-ext/torch_binding.cpp:6: TORCH_LIBRARY(my_relu, ...) hard-codes the op namespace",
        ),
        (
            "torch-ext/torch_binding.cpp",
            BINDING.replace("IMPL_EXPAND(TORCH_EXTENSION_NAME", "IMPL_EXPAND(relu"),
            "torch_binding.cpp:13: TORCH_LIBRARY_IMPL_EXPAND(relu, ...) hard-codes",
        ),
        (
            "torch-ext/torch_binding.cpp",
            BINDING.replace("TORCH_LIBRARY_IMPL_EXPAND(", "TORCH_LIBRARY_IMPL("),
            "torch_binding.cpp:13: TORCH_LIBRARY_IMPL(TORCH_EXTENSION_NAME, ...) registers the "
            "literal namespace 'TORCH_EXTENSION_NAME'; write TORCH_LIBRARY_IMPL_EXPAND(",
        ),
        (
            "torch-ext/relu/__init__.py",
            "# fine: cpp_extension in a comment\nfrom torch.utils.cpp_extension import load\n",
            "torch-ext/relu/__init__.py:2: uses cpp_extension to compile at import time",
        ),
    ],
)
def test_a_project_kernel_builder_would_reject_fails_at_policy(
    tmp_path: Path, path: str, text: str, reason: str
) -> None:
    broken = project(tmp_path, files={path: text})
    with pytest.raises(SampleFailed, match=re.escape(reason)) as excinfo:
        check_project(broken, "cuda", "kernel-builder")
    assert excinfo.value.stage == "policy"
    assert str(excinfo.value).endswith("or pass --upskill-binding=any to build it anyway")
    check_project(broken, "cuda", "any")  # the escape hatch


def test_flags_pass_to_the_sources_they_belong_to(tmp_path: Path) -> None:
    checked = project(
        tmp_path,
        torch_flags='cxx-flags = ["-DCANARY", "-O3", "-march=native", "-Wno-unused"]',
        kernel_flags='cuda-flags = ["--use_fast_math", "-Xptxas", "-v,-warn-spills", '
        '"-lineinfo", "-U__CUDA_NO_HALF_OPERATORS__", "-Xcompiler=-fno-strict-aliasing"]\n'
        'cxx-flags = ["-ffast-math"]',
    )
    check_project(checked, "cuda", "kernel-builder")
    torch_flags = ["-DCANARY", "-O3", "-march=native", "-Wno-unused"]
    assert cxx_flags(checked, "cuda") == {
        "torch-ext/torch_binding.cpp": torch_flags,
        "torch-ext/torch_binding.h": torch_flags,
        "relu_cuda/host.cpp": ["-ffast-math"],
    }
    assert cuda_flags(checked, "cuda") == {
        "relu_cuda/relu.cu": [
            "--use_fast_math",
            "-Xptxas=-v,-warn-spills",
            "-lineinfo",
            "-U__CUDA_NO_HALF_OPERATORS__",
            "-Xcompiler=-fno-strict-aliasing",
        ]
    }
    assert cuda_flags(checked, "cpu") == {}


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ('cuda-flags = ["-Xcompiler=-fplugin=/tmp/evil.so"]', "'-Xcompiler=-fplugin=/tmp/evil.so'"),
        ('cuda-flags = ["-Xcompiler", "-fplugin=/tmp/evil.so"]', "'-Xcompiler=-fplugin="),
        ('cuda-flags = ["-o", "/home/user/.bashrc"]', "cuda-flags: '-o' is not an allowed flag"),
        ('cuda-flags = ["-I/etc"]', "'-I/etc'"),
        ('cuda-flags = ["@flags.rsp"]', "'@flags.rsp'"),
        ('cuda-flags = ["-Xptxas=-o,/tmp/x"]', "'-Xptxas=-o,/tmp/x'"),
        ('cuda-flags = ["-gencode=arch=compute_80,code=sm_80"]', "set the targets with cuda-capa"),
        ('cuda-flags = ["-ccbin=/tmp/cc"]', "'-ccbin=/tmp/cc'"),
        ('cxx-flags = ["-fprofile-generate=/tmp/p"]', "cxx-flags: '-fprofile-generate=/tmp/p'"),
        ('cxx-flags = ["-Wl,-rpath,/tmp"]', "'-Wl,-rpath,/tmp'"),
        ('cxx-flags = ["-DX=$(touch /tmp/pwned)"]', "'-DX=$(touch /tmp/pwned)'"),
    ],
)
def test_a_flag_off_the_allow_list_fails_at_policy_whatever_the_binding(
    tmp_path: Path, flags: str, reason: str
) -> None:
    broken = project(tmp_path, kernel_flags=flags)
    with pytest.raises(SampleFailed, match=r"build\.toml kernel\.relu .*" + re.escape(reason)):
        check_project(broken, "cuda", "any")


def test_torch_cxx_flags_are_checked_too(tmp_path: Path) -> None:
    broken = project(tmp_path, torch_flags='cxx-flags = ["-include/etc/passwd"]')
    with pytest.raises(SampleFailed, match="torch cxx-flags: '-include/etc/passwd'"):
        check_project(broken, "cpu", "kernel-builder")


# A KernelBench-style binding: torch/extension.h and a pybind11 module.
PYBIND_BINDING = """\
#include <torch/extension.h>

#include "torch_binding.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("row_softmax", &row_softmax); }
"""


def test_binding_any_builds_what_kernel_builder_would_reject(
    pytester: pytest.Pytester, broken: Path, upskill_args: list[str]
) -> None:
    (broken / "torch-ext" / "torch_binding.cpp").write_text(PYBIND_BINDING)
    default = ROW_SOFTMAX_TEST.replace('"solutions/row_softmax"', '"solutions/broken"')
    pytester.makepyfile(
        default.replace("def test_row_softmax", "def test_a_default")
        + default.replace("def test_row_softmax", "def test_b_marker").replace(
            'backend="cpu",', 'backend="cpu", binding="any",'
        )
    )
    args = ["--upskill-model=oracle", "--upskill-report=r.json", *upskill_args]
    result = pytester.runpytest(*args)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "upskill [[]policy[]] failed: torch-ext/torch_binding.cpp:1: includes "
            "torch/extension.h, *; or pass --upskill-binding=any to build it anyway",
        ]
    )
    refused, built = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert (refused["stage"], refused["built"]) == ("policy", False)
    assert (built["outcome"], built["built"]) == ("passed", True)

    result = pytester.runpytest(*args, "--upskill-binding=any")
    result.assert_outcomes(passed=2)


# Task rules: a CUDA task launches a __global__ function of its own; `forbid` patterns.

LAUNCHED = """\
#include <cuda_runtime.h>
template <typename T>
__global__ void __launch_bounds__(256) relu_kernel(T* out, const T* in, int n) {}
void relu(float* out, const float* in, int n) {
  relu_kernel<float><<<(n + 255) / 256, 256>>>(out, in, n);
}
"""


def task(**fields: object) -> Task:
    return task_from_marker(("Write relu.",), dict(fields), "relu", Path(__file__))


@pytest.mark.parametrize(
    "source",
    [
        LAUNCHED,
        LAUNCHED.replace(
            "relu_kernel<float><<<(n + 255) / 256, 256>>>(out, in, n);",
            "void* args[] = {&out, &in, &n};\n"
            "  cudaLaunchKernel((void*)relu_kernel<float>, dim3(1), dim3(256), args, 0, 0);",
        ),
    ],
)
def test_a_cuda_task_passes_when_it_launches_a_kernel_of_its_own(
    tmp_path: Path, source: str
) -> None:
    check_task_rules(project(tmp_path, files={"relu_cuda/relu.cu": source}), task())


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "// __global__ void relu_kernel() {}\nvoid relu() { at::relu_(x); }\n",
            "the project defines no __global__ function: the task asks for a CUDA kernel",
        ),
        (
            LAUNCHED.replace("relu_kernel<float><<<", "/* relu_kernel<float><<< */ other<<<"),
            "no __global__ function of the project is launched (defined: relu_kernel): launch "
            "one with <<<...>>> or cudaLaunchKernel",
        ),
    ],
)
def test_a_cuda_task_without_a_launched_kernel_fails_at_policy(
    tmp_path: Path, source: str, reason: str
) -> None:
    files = {"relu_cuda/relu.cu": source}
    with pytest.raises(SampleFailed, match=re.escape(reason)) as excinfo:
        check_task_rules(project(tmp_path, files=files), task())
    assert excinfo.value.stage == "policy"
    check_task_rules(project(tmp_path / "off", files=files), task(require_launch=False))
    check_task_rules(project(tmp_path / "cpu", files=files), task(backend="cpu"))


def test_forbidden_patterns_are_named_with_file_and_line(tmp_path: Path) -> None:
    files = {
        "relu_cuda/host.cpp": (
            '// at::relu in a comment, and a string: "torch::relu"\n'
            "at::Tensor f(at::Tensor x) {\n"
            "  auto s = at::cuda::getStreamFromPool();\n"
            "  return ::at::relu(x);  // cat::relu( is not at::relu\n"
            "}\n"
        ),
        "torch-ext/relu/__init__.py": (
            '"""torch.relu in a docstring."""\n'
            "from ._ops import ops  # torch.relu in a comment\n"
            "def relu(x):\n"
            "    return torch.relu(x)\n"
        ),
        "relu_cuda/relu.cu": LAUNCHED,
    }
    forbid = ["at::relu", r"torch\.relu\(", "getStreamFromPool|cudaStreamCreate", "cat::relu("]
    with pytest.raises(SampleFailed) as excinfo:
        check_task_rules(project(tmp_path, files=files), task(forbid=forbid))
    assert excinfo.value.stage == "policy"
    assert excinfo.value.reason == (
        "relu_cuda/host.cpp:3 uses 'getStreamFromPool'; relu_cuda/host.cpp:4 uses 'at::relu'; "
        "torch-ext/relu/__init__.py:4 uses 'torch.relu(': the task forbids 'at::relu', "
        "'torch\\\\.relu\\\\(', 'getStreamFromPool|cudaStreamCreate', 'cat::relu('"
    )
    assert (
        forbidden(project(tmp_path / "clean", files={"relu_cuda/relu.cu": LAUNCHED}), tuple(forbid))
        == []
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"forbid": "at::relu"}, "forbid must be a list of patterns, such as ['at::layer_norm']"),
        ({"forbid": ["at::relu", " "]}, "forbid holds an empty pattern"),
        (
            {"forbids": ["at::relu"]},
            "forbids is not an argument of the marker (name, backend, capability, reference, "
            "binding, forbid, require_launch)",
        ),
    ],
)
def test_marker_rules_are_validated(fields: dict[str, object], message: str) -> None:
    with pytest.raises(TaskInvalid, match=re.escape(f"@pytest.mark.upskill: {message}")):
        task(**fields)
