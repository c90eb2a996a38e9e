"""Load kernels and run their tests in a child pytest session: a segfault, abort, `exit()`,
endless loop or runaway allocation in generated code fails that one test, never the session.

The child is spawned (never forked: CUDA may be initialized here), collects what this process
collected, and runs the items handed to it with the prepared sample. It holds no secrets, works
in the sample's folder, and where Landlock is on may write only in pytest's temporary folders.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .environ import scrubbed_environ
from .errors import Stage
from .paths import LOCK_DIR_VARIABLE, lock_dir

if TYPE_CHECKING:
    from .sample import Sample

__all__ = ["KernelProcess", "Verdict", "memory_total_gib", "receive_frame", "send_frame"]

# The child's phases, in order -> the stage a sample is at when the child stops answering in it.
_STAGE_OF_PHASE: dict[str, Stage] = {
    "start": "load",
    "setup": "load",
    "load": "load",
    "check": "check",
    "teardown": "check",
}
_LARGEST_MESSAGE = 256 << 20  # reports with captured output; more is a broken child
_HEADER = 4  # each message on the wire: its length, 4 bytes big-endian, then its bytes
_POLL_S = 0.1
_START_S = 300.0  # a child's start-up: Python, pytest, collection and torch on a busy runner


@dataclass(frozen=True)
class Verdict:
    """Why the child did not bring back an item's reports: stage, one line, and detail.
    `harness`: the harness failed (the child could not start), no fault of the model's."""

    stage: Stage
    reason: str
    detail: str = ""
    harness: bool = False


def _proc_gib(path: str, field: str) -> float:
    """A size in kB from a /proc status file (`MemTotal:`, `VmRSS:`), in GiB; 0 if not there."""
    try:
        with open(path, encoding="ascii") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def memory_total_gib() -> float:
    """This machine's memory, GiB (0 where /proc/meminfo is not there)."""
    return _proc_gib("/proc/meminfo", "MemTotal:")


def _death(returncode: int) -> str:
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
            what = signal.strsignal(number) or ""
        except ValueError:
            name, what = f"signal {number}", ""
        return f"the test process was killed by {name}" + (f" ({what.lower()})" if what else "")
    return f"the test process exited with status {returncode}"


def send_frame(channel: socket.socket, data: bytes) -> None:
    channel.sendall(len(data).to_bytes(_HEADER, "big") + data)


def receive_frame(channel: socket.socket) -> bytes | None:
    """The next message, waiting as long as it takes (the child's side); None at the end."""
    data = b""
    while len(data) < _HEADER or len(data) < _HEADER + int.from_bytes(data[:_HEADER], "big"):
        chunk = channel.recv(1 << 20)
        if not chunk:
            return None
        data += chunk
    return data[_HEADER:]


class KernelProcess:
    """This process's child session: started on first use, and again after it dies."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        timeout_s: float,
        memory_limit_gib: float,
        sandbox: bool,
        upskill_input: dict[str, Any],
    ) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self.memory_limit_gib = memory_limit_gib
        self.sandbox = sandbox
        self.upskill_input = upskill_input
        self.basetemp = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._buffer = b""  # what the child sent that is not a whole message yet
        self._log: Path | None = None
        self._ready = False
        self._started = 0
        self._requests = 0
        self._broken: Verdict | None = None  # why no child could start: not tried again

    def _arguments(self, basetemp: Path) -> list[str]:
        args = [str(arg) for arg in self.config.invocation_params.args]
        args += ["--basetemp", str(basetemp)]
        if self.config.pluginmanager.has_plugin("cacheprovider"):
            args += ["-o", f"cache_dir={basetemp / 'cache'}"]  # not the project's .pytest_cache
        if self.config.pluginmanager.has_plugin("xdist"):
            args += ["-n", "0"]  # the child runs what it is given, in its own process only
        return args

    def start(self) -> None:
        """Spawn the child; it collects while this process asks models and builds."""
        if self._process is not None or self._broken is not None:
            return
        self._started += 1
        home = self.basetemp / f"upskill-kernels-{self._started}"
        home.mkdir(parents=True, exist_ok=True)
        self._log = home / "output.log"
        environ = scrubbed_environ()
        # Temporary files (and in the sandbox the JIT caches of CUDA and Triton) go where the
        # sandbox lets them; GPU locks stay where every process of this user finds them.
        environ["TMPDIR"] = str(home)
        environ[LOCK_DIR_VARIABLE] = str(lock_dir())
        if self.sandbox:
            environ.setdefault("CUDA_CACHE_PATH", str(home / "cuda-cache"))
            environ.setdefault("TRITON_CACHE_DIR", str(home / "triton-cache"))
        ours, theirs = socket.socketpair()
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pytest_upskill.child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=environ,
                cwd=self.config.invocation_params.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed whole
            )
        theirs.close()
        self._channel, self._buffer = ours, b""
        writable = [self.basetemp, lock_dir(), Path("/dev")] if self.sandbox else []
        hello = {
            "args": self._arguments(home / "basetemp"),
            "writable": [str(path) for path in writable],
            "upskill_input": self.upskill_input,
            "parent": os.getpid(),
        }
        self._ready = False
        self._send(hello)

    def _send(self, message: dict[str, Any]) -> bool:
        """Send the child a message; False if it does not take it within the timeout."""
        assert self._channel is not None
        self._channel.settimeout(self.timeout_s)  # a child that never reads cannot hang us
        try:
            send_frame(self._channel, pickle.dumps(message))
        except OSError:
            return False
        return True

    def run(
        self, item: pytest.Item, nextitem: str | None, sample: Sample
    ) -> list[pytest.TestReport] | Verdict:
        """Run `item` in the child with `sample` prepared; its reports, or why there are none."""
        self.start()
        if self._broken is not None:
            return self._broken
        phase = "start"
        if not self._ready:
            answer = self._receive(phase, time.monotonic(), max(self.timeout_s, _START_S), None)
            if isinstance(answer, Verdict):
                reason = f"the test process did not start: {answer.reason}"
                self._broken = Verdict("load", reason, self._log_tail(), harness=True)
                return self._broken
            self._ready = True
        self._requests += 1
        request = self._requests  # its answers carry it: a kernel's leftovers are told apart
        if not self._send(
            {"id": request, "nodeid": item.nodeid, "nextitem": nextitem, "sample": sample}
        ):
            return self._stop(phase, "the test process took no more work")
        phases = list(_STAGE_OF_PHASE)
        since = time.monotonic()
        while True:
            answer = self._receive(phase, since, self.timeout_s, request)
            if isinstance(answer, Verdict):
                return answer
            new = answer.get("phase")
            if new in phases and phases.index(new) > phases.index(phase):
                phase, since = new, time.monotonic()  # each phase gets the timeout, once
            elif "reports" in answer:
                return self._reports(item, answer["reports"], phase)
            elif "missing" in answer:  # the child is fine: only this item is not there
                reason = f"the test process did not collect {item.nodeid}"
                return Verdict(_STAGE_OF_PHASE[phase], reason, harness=True)
            else:
                return self._stop(phase, "the test process sent a message out of turn")

    def _receive(
        self, phase: str, since: float, seconds: float, request: int | None
    ) -> dict[str, Any] | Verdict:
        """The child's next message about `request`, waiting until `seconds` after `since` and
        watching its memory; messages about earlier requests are dropped."""
        assert self._process is not None
        assert self._channel is not None
        while True:  # the clock and the memory are checked however busy the child keeps us
            if time.monotonic() > since + seconds:
                return self._stop(phase, f"timed out after {seconds:g} s (--upskill-timeout)")
            used = _proc_gib(f"/proc/{self._process.pid}/status", "VmRSS:")
            if used > self.memory_limit_gib:
                return self._stop(
                    phase,
                    f"the test process used {used:.1f} GiB of memory, over the limit of "
                    f"{self.memory_limit_gib:g} GiB (--upskill-memory-limit)",
                )
            data = self._buffer
            length = int.from_bytes(data[:_HEADER], "big") if len(data) >= _HEADER else 0
            if length > _LARGEST_MESSAGE:
                return self._stop(phase, "the test process sent a message too long to read")
            if len(data) < _HEADER or len(data) < _HEADER + length:
                if not select.select([self._channel], [], [], _POLL_S)[0]:
                    continue
                try:
                    chunk = self._channel.recv(1 << 20)
                except OSError:
                    chunk = b""
                if not chunk:
                    return self._stop(phase, None)
                self._buffer += chunk
                continue
            frame, self._buffer = data[_HEADER : _HEADER + length], data[_HEADER + length :]
            try:
                message = json.loads(frame)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                return self._stop(phase, "the test process sent something that is not a message")
            if message.get("id") == request:
                return message

    def _reports(
        self, item: pytest.Item, data: Any, phase: str
    ) -> list[pytest.TestReport] | Verdict:
        hook = self.config.hook
        try:
            reports = [
                hook.pytest_report_from_serializable(config=self.config, data=d) for d in data
            ]
        except Exception:  # a child that writes its own "reports" is broken, or hostile
            reports = []
        whens = [getattr(report, "when", None) for report in reports]
        if (
            not reports
            or not all(
                isinstance(r, pytest.TestReport) and r.nodeid == item.nodeid for r in reports
            )
            or whens not in (["setup", "teardown"], ["setup", "call", "teardown"])
        ):
            return self._stop(phase, "the test process sent reports that do not read back")
        for report in reports:
            if isinstance(report.longrepr, list):  # a skip's (path, line, reason), through JSON
                report.longrepr = tuple(report.longrepr)
        return reports

    def _stop(self, phase: str, reason: str | None) -> Verdict:
        """End the child (and anything it started); a fresh one serves the next item."""
        process, self._process = self._process, None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        returncode = 0
        if process is not None:
            if process.poll() is None and reason is None:
                # It closed the connection: give it a moment to finish dying.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
        if reason is None:
            reason = _death(returncode)
        return Verdict(_STAGE_OF_PHASE.get(phase, "check"), reason, self._fault())

    def _log_tail(self) -> str:
        """The end of what the child printed (its own pytest's errors, its crash)."""
        if self._log is None or not self._log.is_file():
            return ""
        with open(self._log, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 65536))
            return log.read().decode("utf-8", "replace")

    def _fault(self, lines: int = 12) -> str:
        """Where Python's fault handler says the child crashed, if it crashed."""
        text = self._log_tail()
        start = text.rfind("Fatal Python error")
        return "\n".join(text[start:].splitlines()[:lines]) if start >= 0 else ""

    def close(self) -> None:
        """End the child: told first (it tears down the fixtures it keeps), then killed."""
        if self._process is not None:
            self._stop("start", None)
