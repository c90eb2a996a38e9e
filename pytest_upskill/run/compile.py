"""Run a build's compilers on generated code: ninja and all it starts, inside the sandbox,
which may write only the build's own folder, with a timeout, and with their output bounded."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..environ import passed_environ
from ..errors import SampleError, SampleFailed
from .processes import kill_tree
from .sandbox import Limits, Mechanism, Sandbox, python_paths, system_paths

__all__ = [
    "CANCELLED",
    "KILLED",
    "LARGEST_BUILD",
    "LARGEST_LOG",
    "NinjaRun",
    "bytes_written",
    "ninja_jobs",
    "read_usage",
    "run_ninja",
]

LARGEST_BUILD = 2 << 30  # bytes a build may write, and the largest file
CANCELLED = "the build was cancelled: the session is ending"
# A compiler killed under a build (the kernel's OOM killer, a process limit): the driver's own
# line, or ninja's, at a line's start, never a diagnostic that quotes the project's text.
KILLED = re.compile(
    r"^\S*(?:c\+\+|g\+\+|gcc|nvcc)(?:-[\d.]+)?: (?:fatal error: |internal compiler error: )?"
    r"(?:Killed|cannot fork)|^ninja: fatal: (?:fork|posix_spawn)",
    re.MULTILINE,
)
LARGEST_LOG = 1 << 20  # bytes of compiler output kept: the beginning and the end


def ninja_jobs() -> list[str]:
    """`-j MAX_JOBS` when set, as torch's extension builds read it."""
    jobs = os.environ.get("MAX_JOBS", "").strip()
    return ["-j", jobs] if jobs.isdigit() and int(jobs) > 0 else []


@dataclass(frozen=True)
class NinjaRun:
    """What one ninja run did: its exit status, its output (a bounded part) and the CPU seconds
    its compilers took."""

    returncode: int
    log: str
    cpu_s: float


def run_ninja(
    directory: Path,
    ninja: str,
    cxx: str,
    timeout_s: float,
    sandbox: Mechanism | None,
    readable: tuple[Path, ...] = (),
    jobs: int | None = None,
    cancel: threading.Event | None = None,
    nice: int = 0,
) -> NinjaRun:
    """Run ninja in `directory`: inside the sandbox, which may write only there, reads only
    the toolchain (and `readable`), and holds no secret; its compilers are killed with it at
    `timeout_s`, when `cancel` is set, or when this process is interrupted. `jobs`: ninja's
    `-j` (None: MAX_JOBS where it is set, else ninja's own); `nice`: how much lower than this
    process's its compilers' priority is (a build ahead yields to the tests' builds and timing)."""
    parallel = ninja_jobs() if jobs is None else ["-j", str(jobs)]
    command = [ninja, *parallel, "-C", str(directory)]
    environ = {**passed_environ(), "HOME": str(directory), "TMPDIR": str(directory / "tmp")}
    (directory / "tmp").mkdir()
    usage = directory / "tmp" / "usage"
    if sandbox is not None:
        allowed = [*system_paths(), *python_paths(), Path(cxx).resolve().parents[1], *readable]
        limits = Limits(file_bytes=LARGEST_BUILD)
        box = Sandbox(tuple(allowed), (directory,), environ, directory, limits=limits)
        command = box.command(command, sandbox, usage=usage)
    if nice and shutil.which("nice"):
        command = ["nice", "-n", str(nice), *command]
    output = directory / "tmp" / "output"
    try:
        with open(output, "wb") as stream:  # a flood of errors fills a file, not this process
            process = subprocess.Popen(
                command,
                stdout=stream,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environ,
                cwd=directory,
                start_new_session=True,  # so a timeout ends the compilers too
            )
            try:
                returncode, cpu_s = _wait(process, timeout_s, cancel)
            except BaseException:  # a timeout, or Ctrl-C: no compiler outlives its build
                kill_tree(process.pid)
                process.wait()
                raise
        if sandbox == "bubblewrap":  # its PID namespace hides the compilers from wait4
            cpu_s = read_usage(usage)
        return NinjaRun(returncode, _bounded_text(output), cpu_s)
    finally:
        shutil.rmtree(directory / "tmp", ignore_errors=True)


def _wait(
    process: subprocess.Popen[bytes], timeout_s: float, cancel: threading.Event | None
) -> tuple[int, float]:
    """Reap `process` with wait4, for the CPU seconds of all it waited for; returns its exit
    status and those seconds."""
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            raise SampleFailed(
                "build", f"the build took longer than {timeout_s:g} s and was stopped"
            )
        if cancel is not None and cancel.is_set():
            raise SampleError("build", CANCELLED)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def read_usage(path: Path) -> float:
    """The CPU seconds the sandbox wrote to `path`, or 0 where it wrote none: a file the sandbox
    could also have replaced, so it is opened without following links or blocking, and read
    only if it is a small regular file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        handle = os.open(path, flags)
    except OSError:
        return 0.0
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return 0.0
        text = os.read(handle, 64).decode("ascii", "replace")
    finally:
        os.close(handle)
    try:
        seconds = float(text)
    except ValueError:
        return 0.0
    return seconds if 0 <= seconds < 1e9 else 0.0


def _bounded_text(path: Path) -> str:
    """A log's beginning and end, at most `LARGEST_LOG` bytes in all."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        if size <= LARGEST_LOG:
            data = stream.read()
        else:
            head = stream.read(LARGEST_LOG // 2)
            stream.seek(size - LARGEST_LOG // 2)
            cut = f"\n[... {size - LARGEST_LOG} bytes of output cut by pytest-upskill ...]\n"
            data = head + cut.encode() + stream.read()
    return data.decode("utf-8", "replace")


def bytes_written(directory: Path) -> int:
    total = 0
    for folder, _, names in os.walk(directory):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
