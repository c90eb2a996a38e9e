import pytest
import torch

from pytest_upskill.check import assert_correct, speedup

# The work must be the kernel's: no ATen softmax in C++, no torch softmax in the Python wrapper.
FORBID = [r"\b(at|torch)::(\w+::)*_?softmax", r"\.softmax\s*\("]
# And what no text check sees (getattr, a macro, a library): no ATen softmax may run in its calls.
FORBID_OPS = [r"^aten::_?(log_)?softmax"]


def make_inputs(shape):
    return (torch.randn(*shape) * 20,)  # large logits: the kernel must subtract the row maximum


def reference(x):
    return torch.softmax(x, dim=-1)


@pytest.mark.upskill(
    "Write a CPU kernel that computes the softmax of each row of a 2-D float32 tensor, "
    "numerically stable for large inputs. Expose row_softmax(x) -> Tensor from the package.",
    name="row_softmax",
    backend="cpu",
    reference="solutions/row_softmax",
    forbid=FORBID,
    forbid_ops=FORBID_OPS,
)
def test_row_softmax(kernel, one_thread):
    assert_correct(
        kernel.row_softmax, reference, make_inputs, shapes=[(64, 1000), (3, 7), (1, 4096)]
    )
    speedup(kernel.row_softmax, reference, make_inputs, (256, 1024), repeats=10)
