"""What `assert_correct` and the timers make of a test's `make_inputs`: its arguments, and the
shape's name in messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["MakeInputs"]

MakeInputs = Callable[..., Sequence[Any]]


def _shape_text(shape: Any) -> str:
    if shape is None:
        return "default"
    if isinstance(shape, torch.Size | tuple | list):
        return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    return repr(shape)


def _as_args(inputs: Any) -> tuple[Any, ...]:
    if isinstance(inputs, tuple | list):
        return tuple(inputs)
    return (inputs,)  # a single tensor is one argument
