"""Process trees: what a sandboxed program started, however it tried to get away (a new
session, a double fork), the memory it holds, how it died, and how to end all of it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

__all__ = [
    "become_subreaper",
    "death",
    "die_with_parent",
    "kill_orphans",
    "kill_tree",
    "memory_total_gib",
    "tree",
    "tree_memory_gib",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def tree(pid: int) -> list[int]:
    """`pid` and every process below it, parents first, as this process sees them."""
    found, index = [pid], 0
    while index < len(found):
        with contextlib.suppress(OSError, ValueError):  # it may exit while it is looked at
            for task in os.listdir(f"/proc/{found[index]}/task"):
                with contextlib.suppress(OSError, ValueError):
                    children = Path(f"/proc/{found[index]}/task/{task}/children").read_text()
                    found += [int(child) for child in children.split()]
        index += 1
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and everything below it (children first stopped with their parents, so
    none is orphaned to init on the way)."""
    for _ in range(100):
        alive = tree(pid)
        for member in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signal.SIGSTOP)  # no more forks while the tree is walked
        alive = tree(pid)
        for member in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signal.SIGKILL)
        if len(alive) <= 1:
            return
        time.sleep(0.01)


def die_with_parent(parent: int) -> None:
    """This process is killed when `parent` dies (a fork does not inherit that: say it in each);
    if `parent` is already gone, it ends now."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def become_subreaper() -> None:
    """Orphans of this process's descendants become its children, not init's."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_orphans() -> None:
    """Kill every child this (subreaper) process has left, and reap them: what a finished
    program left running, a daemon that called setsid() included."""
    for _ in range(100):
        children = [child for child in tree(os.getpid()) if child != os.getpid()]
        if not children:
            return
        for child in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        time.sleep(0.01)


def _status_gib(path: str, field: str) -> float:
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
    return _status_gib("/proc/meminfo", "MemTotal:")


def tree_memory_gib(pid: int) -> float:
    """The resident memory of `pid` and every process below it, GiB."""
    return sum(_status_gib(f"/proc/{member}/status", "VmRSS:") for member in tree(pid))


def death(returncode: int) -> str:
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
            what = signal.strsignal(number) or ""
        except ValueError:
            name, what = f"signal {number}", ""
        return f"the test process was killed by {name}" + (f" ({what.lower()})" if what else "")
    return f"the test process exited with status {returncode}"
