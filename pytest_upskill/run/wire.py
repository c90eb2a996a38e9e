"""What crosses between the pytest process and the sandboxed test process, on both sides.

The parent sends pickles (it is trusted). The test process answers in JSON only, in frames of
a bounded size, and its one result is a typed message: the outcome of each phase, the failure
text, the measurements. Every field is checked and clamped where it arrives; the parent builds
the reports and the sample's record itself, from its own sample and these fields alone.
"""

from __future__ import annotations

import json
import math
import socket
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "LARGEST_FRAME",
    "Frames",
    "Measurement",
    "PhaseReport",
    "Result",
    "receive_frame",
    "send_frame",
]

HEADER = 4  # each frame: its length, 4 bytes big-endian, then its bytes
LARGEST_FRAME = 16 << 20  # a result with captured output; more is a broken or hostile child
_TEXT = 64 << 10  # one failure text or captured section, in characters
_LONGEST_TEST_S = 7 * 86400.0


def _clip(text: str) -> str:
    return text if len(text) <= _TEXT else text[:_TEXT] + "\n[... cut by pytest-upskill]"


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Text = Annotated[str, AfterValidator(_clip)]
Line = Annotated[str, AfterValidator(lambda text: text[:500])]
Seconds = Annotated[float, Field(ge=0, le=_LONGEST_TEST_S), AfterValidator(_finite)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhaseReport(_Message):
    """One phase of the test (setup, call, teardown) as the test process saw it."""

    when: Literal["setup", "call", "teardown"]
    outcome: Literal["passed", "failed", "skipped"]
    text: Text = ""  # the failure, or the skip's reason
    duration: Seconds = 0.0
    sections: list[tuple[Text, Text]] = Field(default=[], max_length=16)
    wasxfail: Text | None = None


class Measurement(_Message):
    """One `check.speedup` call."""

    shape: Line
    kernel_s: Seconds
    reference_s: Seconds
    warnings: list[Line] = Field(default=[], max_length=8)


class Result(_Message):
    """The test process's whole answer about one sample."""

    reports: list[PhaseReport] = Field(min_length=1, max_length=3)
    # Where the sample ended and why, as the plugin in the test process recorded it; the
    # parent takes them only where the reports agree.
    stage: Literal["load", "check"]
    outcome: Literal["passed", "failed", "error", "skipped"]
    reason: Text = ""
    speedups: list[Measurement] = Field(default=[], max_length=1000)


def send_frame(channel: socket.socket, data: bytes) -> None:
    channel.sendall(len(data).to_bytes(HEADER, "big") + data)


def _receive_exactly(channel: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = channel.recv(min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return data


def receive_frame(channel: socket.socket) -> bytes | None:
    """The next frame from the (trusted) parent, waiting as long as it takes; None at the end.
    Reads no byte past it: a file descriptor may follow."""
    header = _receive_exactly(channel, HEADER)
    if header is None:
        return None
    return _receive_exactly(channel, int.from_bytes(header, "big"))


class Frames:
    """Length-framed JSON messages from a socket that may be hostile: never blocks, never
    holds more than one frame's worth."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.buffer = b""
        self.closed = False

    def read(self) -> list[Any]:
        """The whole messages that arrived (None for one that is not a JSON object); raises
        OverflowError for a frame over the limit."""
        try:
            chunk = self.channel.recv(1 << 20)
        except BlockingIOError:  # nothing yet
            chunk = None
        except OSError:
            chunk = b""
        if chunk is not None:
            self.closed = self.closed or not chunk
            self.buffer += chunk
        messages = []
        while len(self.buffer) >= HEADER:
            length = int.from_bytes(self.buffer[:HEADER], "big")
            if length > LARGEST_FRAME:
                raise OverflowError(length)
            if len(self.buffer) < HEADER + length:
                break
            frame, self.buffer = (
                self.buffer[HEADER : HEADER + length],
                self.buffer[HEADER + length :],
            )
            try:
                message = json.loads(frame)
            except (ValueError, RecursionError):  # nested deeper than the parser goes
                message = None
            messages.append(message if isinstance(message, dict) else None)
        return messages
