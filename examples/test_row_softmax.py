import pytest
import torch


@pytest.mark.upskill(
    "Write a CPU kernel that computes the softmax of each row of a 2-D float32 tensor, "
    "numerically stable for large inputs. Expose row_softmax(x) -> Tensor from the package.",
    name="row_softmax",
    backend="cpu",
    reference="solutions/row_softmax",
)
def test_row_softmax(kernel):
    x = torch.randn(64, 1000) * 20
    torch.testing.assert_close(kernel.row_softmax(x), torch.softmax(x, dim=-1))
