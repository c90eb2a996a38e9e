import torch

from ._ops import ops


def gemm_bias_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GELU(x @ weight.T + bias) for bf16 CUDA tensors, as nn.Linear followed by GELU."""
    return ops.gemm_bias_gelu(x, weight, bias)


__all__ = ["gemm_bias_gelu"]
