import pytest
import torch

from pytest_upskill.check import assert_correct, speedup

FORBID = [r"\b(at|torch)::(\w+::)*_?(fused_)?rms_norm", r"\bF\.rms_norm", r"torch\.nn\.functional"]


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


def make_inputs(shape):
    x = torch.randn(*shape, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(shape[1], device="cuda", dtype=torch.bfloat16)
    return x, weight, 1e-6


@pytest.mark.upskill(
    "Write an H100 CUDA kernel for RMSNorm over the last dimension of a bf16 tensor of shape "
    "(tokens, hidden), hidden a multiple of 8, with a bf16 weight of shape (hidden,): "
    "y = x / sqrt(mean(x^2) + eps) * weight, accumulated in float32. "
    "Expose rms_norm(x, weight, eps=1e-6) -> Tensor from the package.",
    name="rms_norm",
    backend="cuda",
    capability="9.0a",
    reference="solutions/rms_norm",
    forbid=FORBID,
)
def test_rms_norm(kernel):
    assert_correct(
        kernel.rms_norm, rms_norm_reference, make_inputs, shapes=[(512, 4096), (3, 8), (1, 8192)]
    )
    speedup(kernel.rms_norm, rms_norm_reference, make_inputs, (8192, 4096))
