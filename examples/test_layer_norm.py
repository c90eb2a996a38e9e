import pytest
import torch
import torch.nn.functional as F

from pytest_upskill.check import assert_correct, speedup

# KernelBench level 1: LayerNorm. The normalization must be the kernel's own.
FORBID = [
    r"\b(at|torch)::(\w+::)*_?(native_)?layer_norm",
    r"\b(F|torch)\.layer_norm",
    r"torch\.nn\.functional",
]


def layer_norm_reference(x, weight, bias, eps=1e-5):
    out = F.layer_norm(x.float(), (x.shape[-1],), weight.float(), bias.float(), eps)
    return out.to(x.dtype)  # computed in float32, rounded once


def make_inputs(shape, device="cpu", dtype=torch.float32):
    tokens, hidden = shape
    x = torch.randn(tokens, hidden, device=device) * 2 + 0.5  # a mean away from zero
    weight = torch.randn(hidden, device=device)
    bias = torch.randn(hidden, device=device)
    return x.to(dtype), weight.to(dtype), bias.to(dtype)


def make_cuda_inputs(shape):
    return make_inputs(shape, "cuda", torch.bfloat16)


@pytest.mark.upskill(
    "Write an H100 CUDA kernel for LayerNorm over the last dimension of a bf16 tensor of shape "
    "(tokens, hidden), hidden a multiple of 8, with bf16 weight and bias of shape (hidden,): "
    "y = (x - mean) / sqrt(var + eps) * weight + bias, the biased variance, accumulated in "
    "float32. Expose layer_norm(x, weight, bias, eps=1e-5) -> Tensor from the package.",
    name="layer_norm",
    backend="cuda",
    capability="9.0a",
    reference="solutions/layer_norm",
    forbid=FORBID,
)
def test_layer_norm(kernel):
    shapes = [(512, 4096), (3, 8), (1, 8192), (4096, 1024)]
    assert_correct(kernel.layer_norm, layer_norm_reference, make_cuda_inputs, shapes=shapes)
    speedup(kernel.layer_norm, layer_norm_reference, make_cuda_inputs, (8192, 4096))


@pytest.mark.upskill(
    "Write a CPU kernel for LayerNorm over the last dimension of a float32 tensor of shape "
    "(tokens, hidden) with float32 weight and bias of shape (hidden,): "
    "y = (x - mean) / sqrt(var + eps) * weight + bias, the biased variance. "
    "Expose layer_norm(x, weight, bias, eps=1e-5) -> Tensor from the package.",
    name="layer_norm",
    backend="cpu",
    reference="solutions/layer_norm_cpu",
    forbid=FORBID,
)
def test_layer_norm_cpu(kernel, one_thread):
    assert_correct(
        kernel.layer_norm, layer_norm_reference, make_inputs, shapes=[(64, 768), (3, 5), (1, 4096)]
    )
    speedup(kernel.layer_norm, layer_norm_reference, make_inputs, (256, 1024), repeats=10)
