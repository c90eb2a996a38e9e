"""Run a build's compilers on generated code: ninja and all it starts, inside the sandbox,
which may write only the build's own folder, with a timeout, and with their output bounded."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from ..environ import passed_environ
from ..errors import SampleFailed
from .processes import kill_tree
from .sandbox import Limits, Mechanism, Sandbox, python_paths, system_paths

__all__ = ["LARGEST_BUILD", "LARGEST_LOG", "bytes_written", "ninja_jobs", "run_ninja"]

LARGEST_BUILD = 2 << 30  # bytes a build may write, and the largest file
LARGEST_LOG = 1 << 20  # bytes of compiler output kept: the beginning and the end


def ninja_jobs() -> list[str]:
    """`-j MAX_JOBS` when set, as torch's extension builds read it."""
    jobs = os.environ.get("MAX_JOBS", "").strip()
    return ["-j", jobs] if jobs.isdigit() and int(jobs) > 0 else []


def run_ninja(
    directory: Path, ninja: str, cxx: str, timeout_s: float, sandbox: Mechanism | None
) -> tuple[int, str]:
    """Run ninja in `directory`: inside the sandbox, which may write only there, reads only
    the toolchain, and holds no secret; its compilers are killed with it at `timeout_s`.
    Returns the exit status and the output, of which this process reads a bounded part."""
    command = [ninja, *ninja_jobs(), "-C", str(directory)]
    environ = {**passed_environ(), "HOME": str(directory), "TMPDIR": str(directory / "tmp")}
    (directory / "tmp").mkdir()
    if sandbox is not None:
        readable = [*system_paths(), *python_paths(), Path(cxx).resolve().parents[1]]
        limits = Limits(file_bytes=LARGEST_BUILD)
        box = Sandbox(tuple(readable), (directory,), environ, directory, limits=limits)
        command = box.command(command, sandbox)
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
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                kill_tree(process.pid)  # the compilers too, whatever session they started
                process.wait()
                raise SampleFailed(
                    "build", f"the build took longer than {timeout_s:g} s and was stopped"
                ) from None
        return process.returncode, _bounded_text(output)
    finally:
        shutil.rmtree(directory / "tmp", ignore_errors=True)


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
