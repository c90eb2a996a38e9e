import torch

from ._ops import ops


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dimension of a (tokens, hidden) bf16 CUDA tensor."""
    return ops.rms_norm(x, weight, eps)


__all__ = ["rms_norm"]
