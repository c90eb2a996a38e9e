"""The project the build benchmarks build: the example row softmax with `<torch/all.h>` first in
both its sources, as most generated projects include torch, and a line of its own."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROW_SOFTMAX = REPO / "examples" / "solutions" / "row_softmax"
KERNEL = "kernel_src/row_softmax.cpp"
BINDING = "torch-ext/torch_binding.cpp"

TEST = """
import pytest
import torch

@pytest.mark.upskill("Softmax of each row of a 2-D float32 tensor. Expose row_softmax(x).",
                     name="row_softmax", backend="cpu")
def test_row_softmax(kernel):
    x = torch.randn(8, 33)
    torch.testing.assert_close(kernel.row_softmax(x), torch.softmax(x, dim=-1))
"""


def all_h_project(variant: str) -> dict[str, str]:
    """The project's files; `variant` goes in a comment, so each variant is a build of its own."""
    from pytest_upskill.generate.providers.oracle import read_project

    files = read_project(ROW_SOFTMAX)
    for source in (KERNEL, BINDING):
        files[source] = f"#include <torch/all.h>\n// variant {variant}\n" + files[source]
    return files
