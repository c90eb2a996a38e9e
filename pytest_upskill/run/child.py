"""The child pytest session that loads kernels and runs their tests (`python -m`).

It collects what its parent collected, then runs the items its parent hands it, one at a time,
and sends back their reports. The parent outlives whatever the generated code does here.

Wire: the parent sends pickles (it is trusted); this process sends JSON only, so nothing the
generated code writes can run code in the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pickle
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from .isolate import receive_frame, send_frame

__all__ = ["ChildServer", "main"]

_PR_SET_PDEATHSIG = 1


class ChildServer:
    """The child session's own plugin: it serves items instead of running the test loop."""

    def __init__(self, channel: socket.socket, upskill_input: dict[str, Any]) -> None:
        self.channel = channel
        self.upskill_input = upskill_input  # what the parent's session shares, as xdist does
        self.request: int | None = None  # the parent's request being served
        self.reports: list[pytest.TestReport] = []

    def send(self, message: dict[str, Any]) -> None:
        send_frame(self.channel, json.dumps({"id": self.request, **message}).encode())

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        from .plugin import child_key

        config.stash[child_key] = self
        # Files are the parent's to write: the reports it writes, not a second copy from here.
        for option in ("xmlpath", "report_log", "htmlpath", "resultlog"):
            if getattr(config.option, option, None):
                setattr(config.option, option, None)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        from .plugin import sample_key

        items = {item.nodeid: item for item in session.items}
        self.send({"ready": True})
        expected: pytest.Item | None = None  # the item the last one was torn down for
        while True:
            frame = receive_frame(self.channel)
            if frame is None:  # the parent is done
                return True
            request = pickle.loads(frame)
            self.request = request["id"]
            item = items.get(request["nodeid"])
            if item is None:
                self.send({"missing": request["nodeid"]})
                continue
            if expected is not item:  # fixtures kept for another item: start clean
                # A fixture of an item already reported that fails to tear down is no fault
                # of this one's.
                with contextlib.suppress(Exception):
                    session._setupstate.teardown_exact(None)
            expected = items.get(request["nextitem"] or "")
            sample = request["sample"]
            item.stash[sample_key] = sample
            self.reports = []
            cwd = os.getcwd()
            os.chdir(sample.directory)
            try:  # the whole protocol, so assertion, warnings and timeout plugins wrap it
                item.ihook.pytest_runtest_protocol(item=item, nextitem=expected)
            finally:
                os.chdir(cwd)
            hook = session.config.hook
            serialized = [
                hook.pytest_report_to_serializable(config=session.config, report=report)
                for report in self.reports
            ]
            self.send({"reports": serialized})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append(report)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.send({"phase": "setup"})

    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any]) -> None:
        if fixturedef.argname == "kernel":
            self.send({"phase": "load"})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self.send({"phase": "check"})

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        self.send({"phase": "teardown"})


def _confine(parent: int, writable: list[Path]) -> None:
    # A parent killed outright takes this process with it: a kernel spinning here never reads
    # the end of the connection.
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
    # Out-of-memory: this process goes first, never the pytest session that started it.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    if writable:
        from .landlock import restrict_writes

        restrict_writes(writable)  # before any thread starts: they inherit it


def main() -> int:
    channel = socket.socket(fileno=int(sys.argv[1]))
    hello = pickle.loads(receive_frame(channel) or b"")
    _confine(hello["parent"], [Path(path) for path in hello["writable"]])
    server = ChildServer(channel, hello["upskill_input"])
    return int(pytest.main(hello["args"], plugins=[server]))


if __name__ == "__main__":
    sys.exit(main())
