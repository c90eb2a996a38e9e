import torch

from ._ops import ops


def row_softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension of a 2-D float32 CPU tensor."""
    return ops.row_softmax(x)


__all__ = ["row_softmax"]
