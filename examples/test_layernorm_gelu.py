import pytest
import torch
import torch.nn.functional as F

from pytest_upskill.check import assert_correct, speedup

# KernelBench level 2: LayerNorm followed by GELU, fused. Neither may come from ATen.
FORBID = [
    r"\b(at|torch)::(\w+::)*_?(native_)?layer_norm",
    r"\b(at|torch)::(\w+::)*gelu",
    r"\bF\.(layer_norm|gelu)",
    r"torch\.nn\.functional",
]


def reference(x, weight, bias, eps=1e-5):
    y = F.layer_norm(x.float(), (x.shape[-1],), weight.float(), bias.float(), eps)
    return F.gelu(y).to(x.dtype)  # computed in float32, rounded once


def make_inputs(shape):
    tokens, hidden = shape
    x = torch.randn(tokens, hidden, device="cuda") * 2 + 0.5
    weight = torch.randn(hidden, device="cuda")
    bias = torch.randn(hidden, device="cuda")
    return x.bfloat16(), weight.bfloat16(), bias.bfloat16()


@pytest.mark.upskill(
    "Write an H100 CUDA kernel that fuses LayerNorm and the exact (erf) GELU over the last "
    "dimension of a bf16 tensor of shape (tokens, hidden), hidden a multiple of 8, with bf16 "
    "weight and bias of shape (hidden,): y = gelu((x - mean) / sqrt(var + eps) * weight + bias), "
    "one pass over memory, accumulated in float32. "
    "Expose layernorm_gelu(x, weight, bias, eps=1e-5) -> Tensor from the package.",
    name="layernorm_gelu",
    backend="cuda",
    capability="9.0a",
    reference="solutions/layernorm_gelu",
    forbid=FORBID,
)
def test_layernorm_gelu(kernel):
    shapes = [(512, 4096), (3, 8), (1, 8192), (4096, 1024)]
    assert_correct(kernel.layernorm_gelu, reference, make_inputs, shapes=shapes)
    speedup(kernel.layernorm_gelu, reference, make_inputs, (8192, 4096))
