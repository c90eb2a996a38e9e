import torch

from ._ops import ops


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """LayerNorm over the last dimension of a (tokens, hidden) bf16 CUDA tensor."""
    return ops.layer_norm(x, weight, bias, eps)


__all__ = ["layer_norm"]
