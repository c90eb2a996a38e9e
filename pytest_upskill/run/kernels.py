"""Load kernels and run their tests in the sandboxed child session (`run.child`), one fork per
sample: a segfault, abort, `exit()`, endless loop, runaway allocation or hostile message in
generated code fails that one sample, never the session or another sample.

The child is spawned inside the sandbox (never forked from here: CUDA may be initialized
here), collects what this process collected, and forks for each sample this process hands it.
Nothing it says is believed: its answer is one typed message, and the reports and the record
are built here from this process's own sample.
"""

from __future__ import annotations

import contextlib
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
from pydantic import ValidationError

from .._compat import tmp_path_factory
from ..environ import passed_environ
from ..errors import Stage
from .child import SAMPLE_MARK
from .compile import bytes_written
from .processes import death, kill_tree, tree_memory_gib
from .sandbox import Mechanism, Sandbox, gpu_devices, python_paths, system_paths
from .wire import Frames, Result, send_frame

if TYPE_CHECKING:
    from ..config import Settings
    from ..sample import Sample

__all__ = ["KernelProcess", "Verdict"]

# The test's phases, in order -> the stage a sample is at when its process stops answering.
_STAGE_OF_PHASE: dict[str, Stage] = {
    "setup": "load",
    "load": "load",
    "check": "check",
    "teardown": "check",
}
_POLL_S = 0.1
_SIZE_EVERY_S = 1.0  # how often the scratch folder is measured
_START_S = 300.0  # the child's start-up: Python, pytest, collection and torch on a busy runner
_DRAIN_S = 2.0  # after a sample's process exited, for the last of what it sent


@dataclass(frozen=True)
class Verdict:
    """Why the sample's process brought back no result: stage, one line, and detail.
    `harness`: the harness failed (the child could not start), no fault of the model's."""

    stage: Stage
    reason: str
    detail: str = ""
    harness: bool = False


def _overruled(result: Result, judged: dict[str, Any]) -> Verdict | None:
    """The judge's word over a pass the sample's process claims: a comparison the judge saw
    fail, or none at all from a test that names `check.assert_correct`."""
    if result.outcome != "passed":
        return None
    problem = judged.get("problem")
    if isinstance(problem, str) and problem:
        return Verdict(
            "check",
            f"check.assert_correct, compared outside the kernel's process: {problem[:2000]} "
            "(the test process reported a pass)",
        )
    if judged.get("names_check") is True and judged.get("compared") == 0:
        return Verdict(
            "check",
            "the test process reported a pass, but none of its check.assert_correct "
            "comparisons reached the judge outside the kernel's process",
        )
    return None


class KernelProcess:
    """This process's sandboxed child session: started on first use, and again after it dies."""

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        *,
        memory_limit_gib: float,
        sandbox: Mechanism | None,
        upskill_input: dict[str, Any],
    ) -> None:
        self.config = config
        self.settings = settings
        self.timeout_s = settings.timeout_s
        self.memory_limit_gib = memory_limit_gib
        self.sandbox = sandbox
        self.upskill_input = upskill_input
        self.basetemp = tmp_path_factory(config).getbasetemp()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: Frames | None = None
        self._log: Path | None = None
        self._ready = False
        self._started = 0
        self._requests = 0
        self._broken: Verdict | None = None  # why no child could start: not tried again

    def _arguments(self, basetemp: Path) -> list[str]:
        args = [str(arg) for arg in self.config.invocation_params.args]
        # The same rootdir and ini file, whatever else the folder pytest started in holds.
        args += ["--rootdir", str(self.config.rootpath), "--basetemp", str(basetemp)]
        if self.config.inipath is not None:
            args += ["-c", str(self.config.inipath)]
        if self.config.pluginmanager.has_plugin("cacheprovider"):
            args += ["-o", f"cache_dir={basetemp / 'cache'}"]  # not the project's .pytest_cache
        if self.config.pluginmanager.has_plugin("xdist"):
            args += ["-n", "0"]  # the child runs what it is given, in its own process only
        return args

    def readable(self) -> list[Path]:
        """What the tests may read: the system, this Python, the rootdir, the ini file, the
        paths pytest was given, skills and the build cache; not the folder pytest started in
        (often the home folder) beyond those, not other processes."""
        config, settings = self.config, self.settings
        user = {config.rootpath, settings.build_dir, *settings.skills}
        if config.inipath is not None:
            user.add(config.inipath)
        for arg in config.args:
            path = config.invocation_params.dir / arg.partition("::")[0]
            if path.exists():
                user.add(path)
        user.update(path.parent for path in settings.cases)  # the skill beside them
        # `python -m pytest` puts the start folder on sys.path: it is no import folder here.
        away = {config.invocation_params.dir, Path.home()} - {config.rootpath}
        imports = [path for path in python_paths(imports=True) if path not in away]
        return [*system_paths(), *imports, *sorted(user)]

    def start(self) -> None:
        """Spawn the child in the sandbox; it collects while this process asks models and
        builds."""
        if self._process is not None or self._broken is not None:
            return
        self._started += 1
        home = self.basetemp / f"upskill-kernels-{self._started}"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        self._log = home / "output.log"
        environ = passed_environ(self.settings.pass_env)
        environ.update(
            HOME=str(home),
            TMPDIR=str(home / "tmp"),
            # JIT caches where the sandbox lets them write; torch.cuda.is_available() without
            # initializing CUDA, which a fork could not use.
            CUDA_CACHE_PATH=str(home / "cuda-cache"),
            TRITON_CACHE_DIR=str(home / "triton-cache"),
            PYTORCH_NVML_BASED_CUDA_CHECK="1",
        )
        # Bound into the sandbox now, so it must exist before the first build.
        self.settings.build_dir.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "pytest_upskill.run.child", str(theirs.fileno())]
        readable = self.readable()
        box = Sandbox(
            tuple(readable),
            (self.basetemp,),
            environ,
            self.config.invocation_params.dir,
            gpu=bool(gpu_devices()),
        )
        if self.sandbox is not None:
            command = box.command(command, self.sandbox)
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(
                command,
                pass_fds=[theirs.fileno()],
                env=environ,
                cwd=self.config.invocation_params.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed whole
            )
        theirs.close()
        # Out of memory, the sandbox goes first, never the pytest session that started it.
        with contextlib.suppress(OSError):
            Path(f"/proc/{self._process.pid}/oom_score_adj").write_text("1000")
        self._control = Frames(ours)
        hello = {
            "args": self._arguments(home / "basetemp"),
            "upskill_input": self.upskill_input,
            "kernel_readable": [str(p) for p in readable] if self.sandbox else None,
            "devices": box.devices(),
        }
        self._ready = False
        self._send(hello)

    def run(self, item: pytest.Item, sample: Sample) -> Result | Verdict:
        """Run `item` with `sample` in a fork of the child; its result, or why there is none."""
        self.start()
        if self._broken is not None:
            return self._broken
        assert self._control is not None
        if not self._ready:
            failed = self._wait_ready()
            if failed is not None:
                reason = f"the test process did not start: {failed.reason}"
                self._broken = Verdict("load", reason, self._log_tail(), harness=True)
                return self._broken
            self._ready = True
        self._requests += 1
        request = self._requests
        scratch = Path(sample.directory) / "run"  # the only folder the kernel may write
        scratch.mkdir(exist_ok=True)
        ours, theirs = socket.socketpair()
        message = {"id": request, "nodeid": item.nodeid, "sample": sample, "scratch": scratch}
        try:
            self._send(message, theirs.fileno())
        except OSError:
            ours.close()
            return self._stop("setup", "the test process took no more work")
        finally:
            theirs.close()
        ours.setblocking(False)
        try:
            return self._follow(request, Frames(ours), scratch)
        finally:
            ours.close()

    def _send(self, message: dict[str, Any], fd: int | None = None) -> None:
        """Send the child a message (after `fd`, the sample's socket, when given); a child that
        does not read it within the timeout cannot hang this process."""
        assert self._control is not None
        channel = self._control.channel
        channel.settimeout(self.timeout_s)
        try:
            if fd is not None:
                socket.send_fds(channel, [b"F"], [fd])
            send_frame(channel, pickle.dumps(message))
        finally:
            channel.setblocking(False)  # read by polling

    def _wait_ready(self) -> Verdict | None:
        """None once the child has collected and is ready; else why it is not."""
        assert self._control is not None
        deadline = time.monotonic() + max(self.timeout_s, _START_S)
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                return self._stop("setup", None)
            select.select([self._control.channel], [], [], _POLL_S)
            try:
                messages = self._control.read()
            except OverflowError:
                return self._stop("setup", "the test process sent a message too long to read")
            for message in messages:
                if message and message.get("ready"):
                    return None
            if self._control.closed:
                return self._stop("setup", None)
        return self._stop("setup", f"timed out after {max(self.timeout_s, _START_S):g} s")

    def _follow(self, request: int, sample: Frames, scratch: Path) -> Result | Verdict:
        """Watch the sample's process: its phases (each gets the timeout once), its memory and
        its scratch folder's size, its one result, and its exit as the child reports it."""
        assert self._control is not None
        assert self._process is not None
        phases = list(_STAGE_OF_PHASE)
        phase, since = "setup", time.monotonic()
        raw_result: Any = None
        harness: str | None = None
        judged: dict[str, Any] = {}
        exited: int | None = None
        exited_at = 0.0
        hostile = False
        measured = time.monotonic()
        while True:
            now = time.monotonic()
            if exited is not None and (sample.closed or now > exited_at + _DRAIN_S):
                break
            if exited is None and now > since + self.timeout_s:
                return self._stop(
                    phase, f"timed out after {self.timeout_s:g} s (--upskill-timeout)"
                )
            used = tree_memory_gib(self._process.pid)
            if used > self.memory_limit_gib:
                return self._stop(
                    phase,
                    f"the test process used {used:.1f} GiB of memory, over the limit of "
                    f"{self.memory_limit_gib:g} GiB (--upskill-memory-limit)",
                )
            if exited is None and now > measured + _SIZE_EVERY_S:
                measured = now
                written = bytes_written(scratch) / (1 << 30)
                if written > self.settings.disk_limit_gb:
                    return self._stop(
                        phase,
                        f"the test process wrote {written:.3g} GiB in its folder, over the "
                        f"limit of {self.settings.disk_limit_gb:g} GiB (--upskill-disk-limit)",
                    )
            channels = [c.channel for c in (sample, self._control) if not c.closed]
            select.select(channels, [], [], _POLL_S)
            try:
                messages = sample.read() if not sample.closed else []
            except OverflowError:
                hostile, sample.closed = True, True
                messages = []
            for message in messages:
                new = message.get("phase") if message else None
                if exited is None and new in phases and phases.index(new) > phases.index(phase):
                    phase, since = new, time.monotonic()  # each phase gets the timeout, once
                elif message and "result" in message:
                    raw_result = message["result"]  # the last one: the harness sends it last
                elif message is None or new is None:
                    hostile = True
            try:
                control = self._control.read()
            except OverflowError:
                return self._stop(phase, "the test process sent a message too long to read")
            for message in control:  # the child's own word, before and after the fork
                if message and message.get("id") == request and type(message.get("exit")) is int:
                    exited, exited_at = message["exit"], time.monotonic()
                    judged = message
                    if "refused" in message:
                        harness = str(message["refused"])[:500]
                    elif "missing" in message:
                        missing = str(message["missing"])[:300]
                        harness = f"the test process did not collect {missing}"
            if self._control.closed and exited is None:
                return self._stop(phase, None)
        if harness is not None:
            return Verdict(_STAGE_OF_PHASE[phase], harness, harness=True)
        if raw_result is None:
            reason = (
                "the test process sent something that is not a message"
                if hostile
                else death(exited or 0)
            )
            return Verdict(_STAGE_OF_PHASE[phase], reason, self._fault())
        try:
            result = Result.model_validate(raw_result)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            return Verdict(
                "check",
                f"the test process sent a result that does not read back ({where}: {error['msg']})",
            )
        return _overruled(result, judged) or result

    def _stop(self, phase: str, reason: str | None) -> Verdict:
        """End the child and everything in its sandbox; a fresh one serves the next sample."""
        returncode = self._end(wait=reason is None)
        why = death(returncode) if reason is None else reason
        return Verdict(_STAGE_OF_PHASE.get(phase, "check"), why, self._fault())

    def _end(self, wait: bool) -> int:
        """Kill the child's whole tree, after a moment to finish dying if `wait` (it closed the
        connection); its exit status."""
        process, self._process = self._process, None
        if self._control is not None:
            self._control.channel.close()
            self._control = None
        if process is None:
            return 0
        if wait and process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        kill_tree(process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()

    def _log_tail(self) -> str:
        """The end of what the child printed (its own pytest's errors, its crash)."""
        if self._log is None or not self._log.is_file():
            return ""
        with open(self._log, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 65536))
            return log.read().decode("utf-8", "replace")

    def _fault(self, lines: int = 12) -> str:
        """Where Python's fault handler says the sample's process crashed, if it crashed, or
        the traceback of what broke in it."""
        text = self._log_tail()
        text = text[text.rfind(SAMPLE_MARK.format(self._requests)) :]
        for start in (text.rfind("Fatal Python error"), text.rfind("Traceback (most recent")):
            if start >= 0:
                return "\n".join(text[start:].splitlines()[:lines])
        return ""

    def close(self) -> None:
        """End the child and everything in its sandbox, at once: its own pytest's teardown and
        torch's exit (a second or more, longer with CUDA) would only delay the session's end."""
        self._end(wait=False)
