import pytest
import torch


@pytest.fixture
def one_thread():
    """CPU timings with one intra-op thread: the example kernels use one, and a thread pool's
    timings on a shared CI machine swing with the load of the other cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
