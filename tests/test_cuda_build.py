"""CUDA projects: nvcc for the target, then a skip with the reason where nothing can run them.

With a CPU build of torch the kernels are compiled only; with a CUDA build of torch they are
also linked and loaded. Either way, on a machine without a Hopper GPU the test is skipped after
the build and the report counts the build.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from pytest_upskill.project.build_files import gencode_flags, sm_targets

BUILD_TOML = """
[general]
name = "relu"
version = 1
edition = 5
backends = ["cuda"]

[torch]
src = ["torch-ext/torch_binding.cpp", "torch-ext/torch_binding.h"]

[kernel.relu]
backend = "cuda"
depends = ["torch"]
src = ["kernel_src/relu.cu"]
"""

RELU_CU = """
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <cuda_runtime.h>

__global__ void relu_kernel(float* out, const float* in, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = in[i] > 0.f ? in[i] : 0.f;
}

at::Tensor relu(const at::Tensor& x) {
  const at::Tensor input = x.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t n = input.numel();
  relu_kernel<<<(n + 255) / 256, 256>>>(out.mutable_data_ptr<float>(), input.const_data_ptr<float>(), n);
  return out;
}
"""

BINDING_H = "#pragma once\n#include <ATen/core/Tensor.h>\nat::Tensor relu(const at::Tensor& x);\n"
BINDING_CPP = """
#include <torch/library.h>
#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("relu(Tensor x) -> Tensor");
  ops.impl("relu", c10::kCUDA, &relu);
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
"""
INIT_PY = "from ._ops import ops\n\n\ndef relu(x):\n    return ops.relu(x)\n"

TEST = """
import pytest
import torch

@pytest.mark.upskill("ReLU of a float32 CUDA tensor.", name="relu", reference="relu_project")
def test_relu(kernel):
    x = torch.randn(1000, device="cuda")
    torch.testing.assert_close(kernel.relu(x), torch.relu(x))
"""


def write_relu(
    pytester: pytest.Pytester, build_toml: str = BUILD_TOML, kernel: str = RELU_CU
) -> None:
    files = {
        "build.toml": build_toml,
        "kernel_src/relu.cu": kernel,
        "torch-ext/torch_binding.h": BINDING_H,
        "torch-ext/torch_binding.cpp": BINDING_CPP,
        "torch-ext/relu/__init__.py": INIT_PY,
    }
    for relative, text in files.items():
        path = pytester.path / "relu_project" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    pytester.makepyfile(TEST)


def run(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = pytester.runpytest(
        "-rs", "--upskill-model=oracle", "--upskill-report=r.json", *upskill_args
    )
    (sample,) = json.loads((pytester.path / "r.json").read_text())["samples"]
    return result, sample


def test_a_cuda_kernel_is_built_for_sm_90a_then_skipped_without_a_hopper_gpu(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    write_relu(pytester)
    result, sample = run(pytester, upskill_args)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * built for sm_90a*; no CUDA device here"])
    assert (sample["outcome"], sample["built"]) == ("skipped", True)
    result.stdout.fnmatch_lines(["oracle*baseline*0/0*-*-*1*1*0*0*$0.0000"])
    # A CPU build of torch has nothing to link against: the record says it compiled only.
    assert sample["compile_only"] is (torch.version.cuda is None)


def test_a_binding_that_includes_cuda_runtime_builds(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    """Bindings commonly include <cuda_runtime.h>: g++ must find what nvcc finds (with a CUDA
    torch the wheels' cuda_runtime.h wants crt/host_config.h, which only the toolkit ships)."""
    write_relu(pytester)
    binding = pytester.path / "relu_project" / "torch-ext" / "torch_binding.cpp"
    binding.write_text("#include <cuda_runtime.h>\n" + BINDING_CPP)
    result, sample = run(pytester, upskill_args)
    assert (sample["outcome"], sample["built"]) == ("skipped", True), sample["reason"]
    result.stdout.fnmatch_lines(["SKIPPED * built for sm_90a*; no CUDA device here"])


def test_cuda_capabilities_in_build_toml_pick_the_target(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    write_relu(pytester, BUILD_TOML + 'cuda-capabilities = ["9.0"]\n')
    result, sample = run(pytester, upskill_args)
    result.stdout.fnmatch_lines(["SKIPPED * built for sm_90[; ]*no CUDA device here"])
    assert sample["built"] is True


def test_an_nvcc_error_fails_at_build_with_its_line(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    write_relu(pytester, kernel=RELU_CU.replace("if (i < n)", "if (i < undeclared_n)"))
    result, sample = run(pytester, upskill_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            'upskill [[]build[]] failed: kernel_src/relu.cu(8): error: identifier "undeclared_n" is undefined'
        ]
    )
    assert (sample["stage"], sample["built"]) == ("build", False)


def test_cuda_source_in_a_cpu_task_fails_at_build(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    write_relu(pytester, BUILD_TOML.replace('"cuda"', '"cpu"'))
    pytester.makepyfile(
        TEST.replace('reference="relu_project"', 'reference="relu_project", backend="cpu"')
    )
    result, _ = run(pytester, upskill_args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "upskill [[]build[]] failed: kernel_src/relu.cu is CUDA source, but the task's backend is cpu"
        ]
    )


@pytest.mark.parametrize(
    ("capabilities", "flags", "targets"),
    [
        (["9.0a"], ["-gencode", "arch=compute_90a,code=sm_90a"], ("sm_90a",)),
        (
            ["8.0", "9.0"],
            ["-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"],
            ("sm_80", "sm_90"),
        ),
    ],
)
def test_gencode_flags(capabilities: list[str], flags: list[str], targets: tuple[str, ...]) -> None:
    assert gencode_flags(capabilities) == flags
    assert sm_targets(capabilities) == targets


# Shaped like kernel-builder's examples/kernels/relu: one project, kernels for several backends
# (only the task's is built), an out-argument op, a `layers` subpackage.
MULTI_BACKEND_TOML = """
[general]
name = "relu"
version = 1
edition = 5
license = "Apache-2.0"
backends = ["cpu", "cuda", "metal", "xpu"]

[general.hub]
repo-id = "kernels-test/relu"

[torch]
src = ["torch-ext/torch_binding.cpp", "torch-ext/torch_binding.h"]

[kernel.relu_xpu]
backend = "xpu"
depends = ["torch"]
src = ["relu_xpu/relu.cpp"]

[kernel.relu_metal]
backend = "metal"
depends = ["torch"]
src = ["relu_metal/relu.mm", "relu_metal/relu.metal"]

[kernel.relu_cpu]
backend = "cpu"
depends = ["torch"]
src = ["relu_cpu/relu_cpu.cpp"]

[kernel.relu]
backend = "cuda"
depends = ["torch"]
src = ["relu_cuda/relu.cu"]
"""

MULTI_BACKEND = {
    "build.toml": MULTI_BACKEND_TOML,
    "relu_xpu/relu.cpp": "#error never built: not the task's backend\n",
    "relu_metal/relu.mm": "#error never built\n",
    "relu_metal/relu.metal": "#error never built\n",
    "relu_cpu/relu_cpu.cpp": """
#include <ATen/core/Tensor.h>

void relu(at::Tensor& out, const at::Tensor& input) {
  const float* in = input.const_data_ptr<float>();
  float* o = out.mutable_data_ptr<float>();
  for (int64_t i = 0; i < input.numel(); ++i) o[i] = in[i] > 0.f ? in[i] : 0.f;
}
""",
    "relu_cuda/relu.cu": """
#include <ATen/core/Tensor.h>

__global__ void relu_kernel(float* out, const float* in, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = in[i] > 0.f ? in[i] : 0.f;
}

void relu(at::Tensor& out, const at::Tensor& input) {
  const int64_t n = input.numel();
  relu_kernel<<<(n + 255) / 256, 256>>>(out.mutable_data_ptr<float>(), input.const_data_ptr<float>(), n);
}
""",
    "torch-ext/torch_binding.h": "#pragma once\n#include <ATen/core/Tensor.h>\n"
    "void relu(at::Tensor& out, const at::Tensor& input);\n",
    "torch-ext/torch_binding.cpp": """
#include <torch/library.h>
#include "registration.h"
#include "torch_binding.h"

TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops) {
  ops.def("relu(Tensor! out, Tensor input) -> ()");
#if defined(CPU_KERNEL)
  ops.impl("relu", c10::kCPU, &relu);
#elif defined(CUDA_KERNEL)
  ops.impl("relu", c10::kCUDA, &relu);
#endif
}

REGISTER_EXTENSION(TORCH_EXTENSION_NAME)
""",
    "torch-ext/relu/__init__.py": """
import torch

from ._ops import ops
from . import layers


def relu(x, out=None):
    out = torch.empty_like(x) if out is None else out
    ops.relu(out, x)
    return out
""",
    "torch-ext/relu/layers/__init__.py": """
import torch


class ReLU(torch.nn.Module):
    def forward(self, x):
        from .. import relu

        return relu(x)
""",
}

MULTI_BACKEND_TESTS = """
import pytest
import torch

@pytest.mark.upskill("ReLU.", name="relu", backend="cpu", reference="relu_project")
def test_relu_cpu(kernel):
    x = torch.randn(64, 100)
    torch.testing.assert_close(kernel.relu(x), torch.relu(x))
    torch.testing.assert_close(kernel.layers.ReLU()(x), torch.relu(x))

@pytest.mark.upskill("ReLU.", name="relu", backend="cuda", reference="relu_project")
def test_relu_cuda(kernel):
    x = torch.randn(64, 100, device="cuda")
    torch.testing.assert_close(kernel.relu(x), torch.relu(x))
"""


def test_one_project_builds_the_kernel_of_each_task_backend_only(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    for relative, text in MULTI_BACKEND.items():
        path = pytester.path / "relu_project" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    pytester.makepyfile(MULTI_BACKEND_TESTS)
    result = pytester.runpytest(
        "-rs", "--upskill-model=oracle", "--upskill-report=r.json", *upskill_args
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * built for sm_90a*; no CUDA device here"])
    cpu, cuda = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert (cpu["outcome"], cpu["built"], cpu["warnings"]) == ("passed", True, [])
    assert (cuda["outcome"], cuda["built"]) == ("skipped", True)
