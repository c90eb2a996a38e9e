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
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ChildServer", "main"]

_PR_SET_PDEATHSIG = 1


class ChildServer:
    """The child session's own plugin: it serves items instead of running the test loop."""

    def __init__(self, connection: Connection, upskill_input: dict[str, Any]) -> None:
        self.connection = connection
        self.upskill_input = upskill_input  # what the parent's session shares, as xdist does

    def send(self, message: dict[str, Any]) -> None:
        self.connection.send_bytes(json.dumps(message).encode())

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
        from _pytest.runner import runtestprotocol

        from .plugin import sample_key

        items = {item.nodeid: item for item in session.items}
        self.send({"ready": True})
        expected: pytest.Item | None = None  # the item the last one was torn down for
        while True:
            try:
                request = pickle.loads(self.connection.recv_bytes())
            except EOFError:  # the parent is done
                return True
            item = items.get(request["nodeid"])
            if item is None:
                self.send({"missing": request["nodeid"]})
                continue
            if expected is not item:  # fixtures kept for another item: start clean
                session._setupstate.teardown_exact(None)
            expected = items.get(request["nextitem"] or "")
            sample = request["sample"]
            item.stash[sample_key] = sample
            cwd = os.getcwd()
            os.chdir(sample.directory)
            try:
                reports = runtestprotocol(item, nextitem=expected, log=False)
            finally:
                os.chdir(cwd)
            hook = session.config.hook
            self.send(
                {
                    "reports": [
                        hook.pytest_report_to_serializable(config=session.config, report=report)
                        for report in reports
                    ]
                }
            )

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
    connection = Connection(int(sys.argv[1]))
    hello = pickle.loads(connection.recv_bytes())
    _confine(hello["parent"], [Path(path) for path in hello["writable"]])
    server = ChildServer(connection, hello["upskill_input"])
    return int(pytest.main(hello["args"], plugins=[server]))


if __name__ == "__main__":
    sys.exit(main())
