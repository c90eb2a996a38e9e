"""Stage `policy`: kernel-builder's binding rules and the compiler-flag allow-list."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROW_SOFTMAX_TEST
from pytest_upskill.errors import SampleFailed
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.layout import Project, load_project, write_project
from pytest_upskill.project.policy import check_project, check_task_rules
from pytest_upskill.project.policy_sources import forbidden
from pytest_upskill.project.policy_toml import cuda_flags, cxx_flags
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


# build.toml's strings reach build.ninja and compiler command lines: a line break in one adds a
# ninja rule. They are checked at `policy`, whatever the binding. TOML below is written with
# escapes (`\\n` in the TOML text), as a model would.
TOML = BUILD_TOML.format(torch_flags="", cuda_flags="")
PWN = r'["src\nrule pwn\n  command = touch /tmp/pwned\nbuild pwn: pwn"]'
LONG = "../" + "a" * 100


def refused(tmp_path: Path, **changes: object) -> str:
    """The reason check_project refuses `project(tmp_path, **changes)` with, at `policy`."""
    with pytest.raises(SampleFailed) as excinfo:
        check_project(project(tmp_path, **changes), "cuda", "any")  # type: ignore[arg-type]
    assert excinfo.value.stage == "policy"
    assert "\n" not in excinfo.value.reason
    return excinfo.value.reason


NEURON = TOML.replace("[torch]", '[general.neuron]\nx = [{y = "\\u0000"}]\n\n[torch]')


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kernel_flags": f"include = {PWN}"}, "[kernel.relu] include[0] (U+000A)"),
        ({"torch_flags": r'include = ["inc", "inc\nrule x"]'}, "[torch] include[1] (U+000A)"),
        (
            {"kernel_flags": r'cuda-capabilities = ["9.0a\nrule x"]'},
            "[kernel.relu] cuda-capabilities[0] (U+000A)",
        ),
        ({"kernel_flags": r'cuda-flags = ["-O3\r"]'}, "[kernel.relu] cuda-flags[0] (U+000D)"),
        ({"torch_flags": r'minver = "2.5\t"'}, "[torch] minver (U+0009)"),
        ({"torch_flags": r'cxx-flags = ["-O3\u2028"]'}, "[torch] cxx-flags[0] (U+2028)"),
        ({"torch_flags": r'cxx-flags = ["-O3\u2029"]'}, "[torch] cxx-flags[0] (U+2029)"),
        ({"torch_flags": r'cxx-flags = ["-O3\u0085"]'}, "[torch] cxx-flags[0] (U+0085)"),
        ({"torch_flags": r'cxx-flags = ["-O3\u007f"]'}, "[torch] cxx-flags[0] (U+007F)"),
        ({"files": {"build.toml": NEURON}}, "[general.neuron] x[0].y (U+0000)"),
        (
            {"files": {"build.toml": TOML.replace("[kernel.relu_cpu]", '[kernel."relu\\rcpu"]')}},
            r"[kernel] 'relu\rcpu' key (U+000D)",
        ),
    ],
)
def test_a_control_character_anywhere_in_build_toml_fails_at_policy(
    tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    key, code = reason.rsplit(" ", 1)
    assert refused(tmp_path, **changes) == f"build.toml: {key} holds a control character {code}"


def test_the_ninja_injection_is_refused_before_any_build(tmp_path: Path) -> None:
    assert refused(tmp_path, kernel_flags=f"include = {PWN}") == (
        "build.toml: [kernel.relu] include[0] holds a control character (U+000A)"
    )


PATH = "is not a relative path inside the project"
CAPABILITY = "is not a CUDA capability such as '8.0', '9.0a' or '10.0f'"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"kernel_flags": 'include = ["../outside"]'},
            f"[kernel.relu] include[0] '../outside' {PATH}",
        ),
        ({"kernel_flags": 'include = ["inc", "/abs"]'}, f"[kernel.relu] include[1] '/abs' {PATH}"),
        ({"kernel_flags": 'include = ["a b"]'}, f"[kernel.relu] include[0] 'a b' {PATH}"),
        ({"kernel_flags": 'include = ["~/x"]'}, f"[kernel.relu] include[0] '~/x' {PATH}"),
        ({"kernel_flags": 'include = ["$HOME"]'}, f"[kernel.relu] include[0] '$HOME' {PATH}"),
        ({"kernel_flags": 'include = ["a//b"]'}, f"[kernel.relu] include[0] 'a//b' {PATH}"),
        ({"kernel_flags": 'include = ["a/./b"]'}, f"[kernel.relu] include[0] 'a/./b' {PATH}"),
        ({"kernel_flags": "include = ['a\\b']"}, f"[kernel.relu] include[0] 'a\\\\b' {PATH}"),
        ({"kernel_flags": "include = ['a\"b']"}, f"[kernel.relu] include[0] 'a\"b' {PATH}"),
        ({"kernel_flags": 'include = ["C:x"]'}, f"[kernel.relu] include[0] 'C:x' {PATH}"),
        ({"kernel_flags": 'include = [""]'}, f"[kernel.relu] include[0] '' {PATH}"),
        (
            {"kernel_flags": f'include = ["{LONG}"]'},
            f"[kernel.relu] include[0] {repr(LONG)[:57]}... {PATH}",
        ),
        ({"torch_flags": 'include = ["../.."]'}, f"[torch] include[0] '../..' {PATH}"),
        (
            {
                "files": {
                    "build.toml": TOML.replace('"relu_cpu/relu.cpp"', '"relu_cpu/a b.cpp"'),
                    "relu_cpu/a b.cpp": "",
                }
            },
            f"[kernel.relu_cpu] src[0] 'relu_cpu/a b.cpp' {PATH}",
        ),
        (
            {
                "files": {
                    "build.toml": TOML.replace('binding.h"]', 'binding.h", "torch-ext/x:y.h"]'),
                    "torch-ext/x:y.h": "",
                }
            },
            f"[torch] src[2] 'torch-ext/x:y.h' {PATH}",
        ),
        (
            {"files": {"build.toml": TOML.replace('["torch"]', '["../torch"]', 1)}},
            f"[kernel.relu] depends[0] '../torch' {PATH}",
        ),
        (
            {"kernel_flags": 'cuda-capabilities = ["9.0a", "90a;touch x"]'},
            f"[kernel.relu] cuda-capabilities[1] '90a;touch x' {CAPABILITY}",
        ),
        (
            {"kernel_flags": 'cuda-capabilities = ["sm_90"]'},
            f"[kernel.relu] cuda-capabilities[0] 'sm_90' {CAPABILITY}",
        ),
        (
            {"kernel_flags": 'cuda-capabilities = ["9.0 "]'},
            f"[kernel.relu] cuda-capabilities[0] '9.0 ' {CAPABILITY}",
        ),
        (
            {"kernel_flags": 'cuda-capabilities = ["\u0669.0"]'},
            f"[kernel.relu] cuda-capabilities[0] '\u0669.0' {CAPABILITY}",
        ),
        (  # named as written: the schema takes snake_case keys too
            {"kernel_flags": 'cuda_capabilities = ["9.0b"]'},
            f"[kernel.relu] cuda_capabilities[0] '9.0b' {CAPABILITY}",
        ),
        (
            {
                "files": {
                    "build.toml": TOML.replace(
                        "[torch]", '[general.cuda]\ncapabilities = ["9.0a$(x)"]\n\n[torch]'
                    )
                }
            },
            f"[general.cuda] capabilities[0] '9.0a$(x)' {CAPABILITY}",
        ),
        (
            {"files": {"build.toml": TOML.replace("[kernel.relu_cpu]", '[kernel."relu cpu"]')}},
            "[kernel.NAME] 'relu cpu' is not a kernel name",
        ),
        (
            {"files": {"build.toml": TOML.replace("[kernel.relu_cpu]", "[kernel.-relu]")}},
            "[kernel.NAME] '-relu' is not a kernel name",
        ),
    ],
)
def test_a_value_of_the_wrong_shape_fails_at_policy(
    tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    assert refused(tmp_path, **changes).startswith(f"build.toml: {reason}")


def test_values_of_the_right_shape_pass(tmp_path: Path) -> None:
    checked = project(
        tmp_path,
        torch_flags='include = ["include", "third_party/cutlass-3.5.1/include"]\n'
        'cxx-flags = ["-DTORCH_EXTENSION_NAME_SUFFIX", "-UCPU_KERNELS"]',
        kernel_flags='include = ["relu_cuda", "c++/x_y.z", ".", "kernel_src/"]\n'
        'cuda-capabilities = ["8.0", "9.0a", "10.0f", "12.0"]\n'
        'cuda-flags = ["-DCUDA_KERNEL_X=1", "-Xptxas", "-v", "-Xcompiler=-DMY_ABI=0"]',
    )
    check_project(checked, "cuda", "kernel-builder")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"torch_flags": 'cxx-flags = ["-DTORCH_EXTENSION_NAME=evil"]'},
            "[torch] cxx-flags: -DTORCH_EXTENSION_NAME=evil",
        ),
        (
            {"kernel_flags": 'cuda-flags = ["-O3", "-UCUDA_KERNEL"]'},
            "[kernel.relu] cuda-flags: -UCUDA_KERNEL",
        ),
        (
            {"kernel_flags": 'cuda-flags = ["-Xcompiler=-D_GLIBCXX_USE_CXX11_ABI=0"]'},
            "[kernel.relu] cuda-flags: -Xcompiler=-D_GLIBCXX_USE_CXX11_ABI=0",
        ),
        (
            {"kernel_flags": 'cxx-flags = ["-D", "CPU_KERNEL"]'},
            "[kernel.relu] cxx-flags: -D CPU_KERNEL",
        ),
        (
            {"kernel_flags": 'cuda-flags = ["-U", "CUDA_KERNEL"]'},
            "[kernel.relu] cuda-flags: -U CUDA_KERNEL",
        ),
        (
            {"kernel_flags": 'cuda-flags = ["--compiler-options", "-fPIC,-UTORCH_EXTENSION_NAME"]'},
            "[kernel.relu] cuda-flags: --compiler-options -fPIC,-UTORCH_EXTENSION_NAME",
        ),
        (
            {"kernel_flags": 'cuda-flags = ["-Xcompiler=-D,TORCH_EXTENSION_NAME=x"]'},
            "[kernel.relu] cuda-flags: -Xcompiler=-D,TORCH_EXTENSION_NAME=x",
        ),
        (
            {"kernel_flags": 'cuda-flags = ["--define-macro=CUDA_KERNEL"]'},
            "[kernel.relu] cuda-flags: --define-macro=CUDA_KERNEL",
        ),
        (
            {"files": {"build.toml": TOML + 'cxx-flags = ["-D_GLIBCXX_USE_CXX11_ABI=1"]\n'}},
            "[kernel.relu_cpu] cxx-flags: -D_GLIBCXX_USE_CXX11_ABI=1",
        ),
    ],
)
def test_a_flag_that_overrides_a_harness_define_fails_at_policy(
    tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    assert refused(tmp_path, **changes) == (
        f"build.toml: {reason} overrides a define the harness sets"
    )


@pytest.mark.parametrize(
    ("flags", "checked"),
    [
        (r'cuda-flags = ["-O3\n"]', cuda_flags),
        (r'cuda-flags = ["-DX=1\nrule x"]', cuda_flags),
        (r'cuda-flags = ["-Xptxas=-v\n"]', cuda_flags),
        (r'cuda-flags = ["-Xcompiler=-O3\n"]', cuda_flags),
        (r'cxx-flags = ["-O3\n"]', cxx_flags),
        (r'cxx-flags = ["-O3\u2028"]', cxx_flags),
        ('cuda-flags = ["--maxrregcount=\\u0663\\u0662"]', cuda_flags),  # Arabic-Indic digits
        ('cxx-flags = ["-DX=\\u00e9"]', cxx_flags),
        ('cxx-flags = ["-march=\\u00e9"]', cxx_flags),
    ],
)
def test_the_flag_allow_list_takes_only_ascii_and_no_line_break(
    tmp_path: Path, flags: str, checked: Callable[[Project, str], object]
) -> None:
    # The allow-list alone, as build.py calls it; check_project refuses control characters first.
    loaded = project(tmp_path, kernel_flags=flags)
    with pytest.raises(SampleFailed, match="is not an allowed flag"):
        checked(loaded, "cuda")


@pytest.mark.parametrize(
    "example", sorted(path.name for path in (EXAMPLES / "solutions").iterdir() if path.is_dir())
)
def test_the_example_solutions_keep_the_policy(example: str) -> None:
    root = EXAMPLES / "solutions" / example
    files = read_project(root)
    (init,) = (path for path in files if re.fullmatch(r"torch-ext/\w+/__init__\.py", path))
    loaded = load_project(root, files, init.split("/")[1])
    backends = {kernel.backend for kernel in loaded.config.kernel.values()}
    assert backends
    for backend in backends:
        check_project(loaded, backend, "kernel-builder")


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
            "binding, forbid, forbid_ops, require_launch)",
        ),
        (
            {"forbid_ops": "aten::_softmax"},
            "forbid_ops must be a list of patterns, such as ['aten::_softmax']",
        ),
        ({"forbid_ops": [""]}, "forbid_ops holds an empty pattern"),
        (
            {"forbid_ops": ["aten::(softmax"]},
            "forbid_ops holds 'aten::(softmax', not a regular expression: missing ), "
            "unterminated subpattern at position 6",
        ),
    ],
)
def test_marker_rules_are_validated(fields: dict[str, object], message: str) -> None:
    with pytest.raises(TaskInvalid, match=re.escape(f"@pytest.mark.upskill: {message}")):
        task(**fields)


def test_digit_separators_and_raw_strings_hide_nothing(tmp_path: Path) -> None:
    """`1'000` is a number, not the start of a character literal that hid the rest of its line;
    a raw string's quotes do not end it early; what is inside strings stays out of the check."""
    files = {
        "relu_cuda/host.cpp": (
            "int n = 1'000; auto y = at::layer_norm(x, {n}); char c = 'a';\n"
            'auto r = R"x(a "quoted" at::relu )x"; auto z = at::relu(x);\n'
            "long h = 0x1'FF'FF; auto s = u8\"at::relu\";\n"
        ),
        "relu_cuda/relu.cu": LAUNCHED,
    }
    found = forbidden(project(tmp_path, files=files), ("at::layer_norm", r"at::relu\("))
    assert found == [
        ("relu_cuda/host.cpp", 1, "at::layer_norm"),
        ("relu_cuda/host.cpp", 2, "at::relu("),
    ]
