"""The judge that compares `check.assert_correct`'s trials outside the kernel's process: what it
reads back exactly, and what it refuses, over a real socket pair."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import torch

from pytest_upskill.check import TOLERANCES, Trial
from pytest_upskill.run.judge import Judged, hand_over, run_judge, serve


@pytest.fixture
def judge() -> Iterator[tuple[socket.socket, Judged]]:
    """The sample's end of a channel whose other end a judge serves, and what it found."""
    ours, theirs = socket.socketpair()
    judged = Judged()
    thread = threading.Thread(target=serve, args=(theirs, judged))
    thread.start()
    yield ours, judged
    ours.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    theirs.close()
    judged.close()


def _trial(got: list[torch.Tensor], expected: list[torch.Tensor], index: int = 0) -> Trial:
    x = torch.arange(6.0)
    return Trial(index, (x, 3, None), (x.clone(), 3, None), got, expected, dict(TOLERANCES))


@pytest.mark.parametrize(
    "value",
    [
        torch.randn(3, 5, dtype=torch.float64),
        torch.randn(4, 2).to(torch.bfloat16),
        torch.tensor([True, False, True]),
        torch.randn(2, 3, dtype=torch.complex64),
        torch.randn(3).to(torch.float8_e4m3fn),
        torch.empty(0, 7),
        torch.tensor(2.5),  # no dimensions
        torch.arange(24).reshape(4, 6).t(),  # not contiguous
        torch.arange(10)[3:7],  # a view into a larger storage
    ],
)
def test_equal_outputs_read_back_equal(
    judge: tuple[socket.socket, Judged], value: torch.Tensor
) -> None:
    channel, judged = judge
    assert hand_over(channel, _trial([value], [value.clone()])) is None
    assert (judged.compared, judged.problem) == (1, None)


def test_what_is_wrong_is_found_and_kept(judge: tuple[socket.socket, Judged]) -> None:
    channel, judged = judge
    x = torch.linspace(1, 2, 16)
    assert hand_over(channel, _trial([x], [x.clone()])) is None
    problem = hand_over(channel, _trial([x + 1], [x], index=1))
    assert problem is not None
    assert "16 of 16 values out of tolerance" in problem
    # A replay of trial 0's output while the reference's changed: only the judge remembers.
    replay = hand_over(channel, _trial([x], [x * 2], index=2))
    assert replay is not None
    assert "equals its output of trial 0" in replay
    assert judged.compared == 3
    assert judged.problem is not None
    assert judged.problem.startswith("16 of 16 values out of tolerance")  # the first one


def test_devices_are_compared_as_they_were(judge: tuple[socket.socket, Judged]) -> None:
    channel, _ = judge
    x = torch.ones(2)
    trial = Trial(0, (), (), [x], [x.clone()], dict(TOLERANCES), (["cpu"], ["cuda:0"]))
    assert hand_over(channel, trial) == "the kernel's output has device cpu, expected cuda:0"


def _frame(header: object, payload: bytes = b"") -> bytes:
    data = json.dumps(header).encode()
    return len(data).to_bytes(4, "big") + data + payload


PAYLOAD = b"\0" * 16  # both outputs' bytes
_GOOD = {
    "index": 0,
    "table": [["torch.float32", 1e-5, 1e-5]],
    "devices": [["cpu"], ["cpu"]],
    "args": [],
    "pristine": [],
    "got": [{"dtype": "torch.float32", "shape": [2]}],
    "expected": [{"dtype": "torch.float32", "shape": [2]}],
}


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        ((1 << 30).to_bytes(4, "big"), "a header of 1073741824 bytes"),
        (
            _frame({**_GOOD, "got": [{"dtype": "os.system", "shape": [2]}]}, PAYLOAD),
            "unknown dtype",
        ),
        (_frame({**_GOOD, "got": [{"dtype": "torch.float32", "shape": [-1]}]}, PAYLOAD), "a shape"),
        (_frame({**_GOOD, "got": [None]}, PAYLOAD), "an output that is no tensor"),
        (_frame({**_GOOD, "table": [["torch.float32", "nan", 0]]}, PAYLOAD), "a tolerance"),
        (_frame({**_GOOD, "devices": [["cpu"], []]}, PAYLOAD), "groups of different lengths"),
        (_frame({**_GOOD, "index": "0"}, PAYLOAD), "a trial number"),
        (_frame(_GOOD, b"\0" * 12), "a message cut short"),  # 16 bytes announced
        (b"\0\0\0\x08not json", "Expecting value"),
        (len(b"[" * 100000).to_bytes(4, "big") + b"[" * 100000, "does not read back"),
    ],
)
def test_a_trial_that_does_not_read_back_is_a_problem(sent: bytes, why: str) -> None:
    ours, theirs = socket.socketpair()
    judged = Judged()
    ours.sendall(sent)
    ours.shutdown(socket.SHUT_WR)
    serve(theirs, judged)  # returns: it neither hangs nor raises
    assert judged.problem is not None
    assert judged.problem.startswith(
        "the test process handed over a comparison that does not read back ("
    )
    assert why in judged.problem
    for each in (ours, theirs):
        each.close()
    judged.close()


def test_a_size_the_judge_cannot_hold_is_a_problem() -> None:
    ours, theirs = socket.socketpair()
    judged = Judged()
    ours.sendall(_frame({**_GOOD, "got": [{"dtype": "torch.float64", "shape": [1 << 50]}]}))
    ours.shutdown(socket.SHUT_WR)
    run_judge(theirs, judged, None)  # 8 PiB: no machine holds it
    assert judged.problem == "the judge could not read a comparison (MemoryError)"
    for each in (ours, theirs):
        each.close()
    judged.close()
