"""`check.assert_correct`'s comparisons, made outside the kernel's process.

The sample's process hands each trial over (inputs before and after the call, the kernel's
outputs, the reference's), copied to the CPU, on its own socket. A process forked from the
child session before the kernel's (so it never imported the kernel) compares them with the
clean `check.judge` and answers. What it found is kept in memory the kernel's process never
had, for the child session to tell the parent: a trial it saw fail fails the sample, whatever
the sample's process says about itself.

A trial is one frame: its header's length (4 bytes), the header (JSON: the trial's number, the
tolerances, and each tensor's dtype and shape, or null for an argument that is no tensor), then
each tensor's bytes in that order. The answer is one frame of JSON: `{"problem": str | null}`.
"""

from __future__ import annotations

import json
import math
import mmap
import socket
from pathlib import Path
from typing import Any

import torch

from ..check.correct import _VALUES, Trial, judge
from .wire import receive_frame, send_frame

__all__ = ["Judged", "hand_over", "run_judge", "serve"]

_LARGEST_HEADER = 1 << 20
_MOST_DIMENSIONS = 64
_GROUPS = ("args", "pristine", "got", "expected")
_PROBLEM_BYTES = 4096
_DTYPES = {str(value): value for value in vars(torch).values() if isinstance(value, torch.dtype)}


class Malformed(ValueError):
    """A handed-over trial that does not read back."""


# The sample's process


def hand_over(channel: socket.socket, trial: Trial) -> str | None:
    """Have the judge compare `trial`; what it found wrong, or None."""
    specs: dict[str, list[dict[str, Any] | None]] = {}
    payload: list[bytes] = []
    for group in _GROUPS:
        specs[group] = []
        for value in getattr(trial, group):
            if not isinstance(value, torch.Tensor):
                specs[group].append(None)
                continue
            copy = value.detach().to("cpu", copy=True).contiguous()
            specs[group].append({"dtype": str(copy.dtype), "shape": list(copy.shape)})
            payload.append(bytes(copy.untyped_storage()) if copy.numel() else b"")
    header = {
        "index": trial.index,
        "table": [[str(dtype), atol, rtol] for dtype, (atol, rtol) in trial.table.items()],
        "devices": trial.devices,
        **specs,
    }
    send_frame(channel, json.dumps(header).encode())
    for data in payload:
        channel.sendall(data)
    answer = receive_frame(channel)
    if answer is None:
        raise AssertionError("the comparison outside the kernel's process stopped answering")
    problem = json.loads(answer)["problem"]
    return None if problem is None else str(problem)


# The judge's process


class Judged:
    """What the judge found, in memory shared with the child session only: how many trials it
    compared, and the first problem."""

    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, 8 + _PROBLEM_BYTES)

    def record(self, problem: str | None) -> None:
        if problem is not None and not self.problem:
            data = problem.removeprefix(_VALUES).encode()[: _PROBLEM_BYTES - 4]
            self.memory[8 : 12 + len(data)] = len(data).to_bytes(4, "big") + data
        self.memory[:8] = (self.compared + 1).to_bytes(8, "big")  # after the problem

    @property
    def compared(self) -> int:
        return int.from_bytes(self.memory[:8], "big")

    @property
    def problem(self) -> str | None:
        length = int.from_bytes(self.memory[8:12], "big")
        return self.memory[12 : 12 + length].decode("utf-8", "replace") if length else None

    def close(self) -> None:
        self.memory.close()


def serve(channel: socket.socket, judged: Judged) -> None:
    """Judge the trials on `channel` until it closes (in the judge's own process)."""
    earlier: list[Trial] = []
    while True:
        try:
            trial = _receive(channel)
        except (Malformed, OSError) as exc:
            judged.record(
                f"the test process handed over a comparison that does not read back ({exc})"
            )
            return
        if trial is None:
            return
        if trial.index == 0:
            earlier.clear()
        problem = judge(trial, earlier)
        judged.record(problem)
        if problem is None:
            earlier.append(trial)  # its copies are the judge's own
        send_frame(channel, json.dumps({"problem": problem}).encode())


def _receive(channel: socket.socket) -> Trial | None:
    """The next trial; None when the channel closed between trials."""
    head = _exactly(channel, 4, at_start=True)
    if head is None:
        return None
    length = int.from_bytes(head, "big")
    if length > _LARGEST_HEADER:
        raise Malformed(f"a header of {length} bytes")
    try:
        header = json.loads(_exactly(channel, length) or b"")
        groups = {
            group: [
                None if spec is None else _tensor(channel, spec) for spec in _list(header[group])
            ]
            for group in _GROUPS
        }
        table = {
            _dtype(name): (_number(atol), _number(rtol)) for name, atol, rtol in header["table"]
        }
        devices = tuple([str(d)[:100] for d in _list(side)] for side in header["devices"])
        index = header["index"]
        if type(index) is not int or len(devices) != 2:
            raise Malformed("a trial number or devices that are not")
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise Malformed(str(exc)[:200]) from None
    got = [t for t in groups["got"] if t is not None]
    expected = [t for t in groups["expected"] if t is not None]
    if len(got) != len(groups["got"]) or len(expected) != len(groups["expected"]):
        raise Malformed("an output that is no tensor")
    lengths = (len(devices[0]), len(devices[1]))
    if len(groups["args"]) != len(groups["pristine"]) or lengths != (len(got), len(expected)):
        raise Malformed("groups of different lengths")
    return Trial(
        index, tuple(groups["args"]), tuple(groups["pristine"]), got, expected, table,
        (devices[0], devices[1]),
    )  # fmt: skip


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise Malformed("a list that is not one")
    return value


def _number(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise Malformed("a tolerance that is no finite number")
    return float(value)


def _dtype(name: Any) -> torch.dtype:
    dtype = _DTYPES.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise Malformed(f"an unknown dtype {str(name)[:40]!r}")
    return dtype


def _tensor(channel: socket.socket, spec: Any) -> torch.Tensor:
    dtype = _dtype(spec["dtype"])
    shape = _list(spec["shape"])
    if len(shape) > _MOST_DIMENSIONS or not all(type(n) is int and n >= 0 for n in shape):
        raise Malformed("a shape that is not one")
    size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    if size == 0:
        return torch.empty(shape, dtype=dtype)
    data = _exactly(channel, size)
    if data is None:
        raise Malformed("a tensor cut short")
    return torch.frombuffer(data, dtype=torch.uint8).view(dtype).reshape(shape)


def _exactly(channel: socket.socket, size: int, at_start: bool = False) -> bytearray | None:
    """`size` bytes; None where the channel closed before the first (`at_start`)."""
    data = bytearray(size)
    view, done = memoryview(data), 0
    while done < size:
        count = channel.recv_into(view[done:])
        if count == 0:
            if at_start and done == 0:
                return None
            raise Malformed("a message cut short")
        done += count
    return data


def run_judge(channel: socket.socket, judged: Judged, readable: list[str] | None) -> None:
    """The judge's process: confined to reading (where Landlock is there), it serves and ends."""
    if readable is not None:
        from .landlock import abi_version, restrict

        if abi_version() >= 1:
            restrict([Path(p) for p in readable], [])
    try:
        serve(channel, judged)
    except BaseException as exc:  # a size it cannot hold, say: the comparison failed
        judged.record(f"the judge could not read a comparison ({type(exc).__name__})")
