import torch

from ._ops import ops


def layernorm_gelu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """GELU(LayerNorm) over the last dimension of a (tokens, hidden) bf16 CUDA tensor."""
    return ops.layernorm_gelu(x, weight, bias, eps)


__all__ = ["layernorm_gelu"]
