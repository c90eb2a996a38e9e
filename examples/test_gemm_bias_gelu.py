import pytest
import torch
import torch.nn.functional as F

from pytest_upskill.check import assert_correct, speedup

# KernelBench level 2: Linear + GELU. The GEMM may go to cuBLAS through at::matmul (allowed on
# purpose: the task is the epilogue); the bias and GELU may not come from ATen, nor may a fused
# cuBLASLt epilogue do them.
FORBID = [
    r"\b(at|torch)::(\w+::)*(gelu|addmm|_addmm_activation|linear|add|add_)\b",
    r"\bF\.(gelu|linear)",
    r"torch\.nn\.functional",
    r"\bcublasLt\w*",
]
# The GEMM's output is rounded to bf16 before the epilogue when cuBLAS does it: an absolute
# tolerance of a bf16 unit in the last place at the GEMM's scale (about 1) allows that rounding.
TOLERANCES = {torch.bfloat16: (1e-2, 1.6e-2)}


def reference(x, weight, bias):
    return F.gelu(x.float() @ weight.float().T + bias.float()).to(x.dtype)


def make_inputs(shape):
    tokens, features_in, features_out = shape
    x = torch.randn(tokens, features_in, device="cuda")
    weight = torch.randn(features_out, features_in, device="cuda") / features_in**0.5
    bias = torch.randn(features_out, device="cuda") * 0.1
    return x.bfloat16(), weight.bfloat16(), bias.bfloat16()


@pytest.mark.upskill(
    "Write an H100 CUDA kernel for a Linear layer followed by the exact (erf) GELU, in bf16: "
    "y = gelu(x @ weight.T + bias) for x (tokens, in), weight (out, in) and bias (out,), out a "
    "multiple of 8. The GEMM may call at::matmul (cuBLAS); the bias and GELU must be your "
    "kernel, applied to the GEMM's output in one pass. "
    "Expose gemm_bias_gelu(x, weight, bias) -> Tensor from the package.",
    name="gemm_bias_gelu",
    backend="cuda",
    capability="9.0a",
    reference="solutions/gemm_bias_gelu",
    forbid=FORBID,
)
def test_gemm_bias_gelu(kernel):
    shapes = [(512, 1024, 4096), (3, 64, 8), (2048, 4096, 1024)]
    assert_correct(
        kernel.gemm_bias_gelu, reference, make_inputs, shapes=shapes, tolerances=TOLERANCES
    )
    speedup(kernel.gemm_bias_gelu, reference, make_inputs, (4096, 4096, 4096))
