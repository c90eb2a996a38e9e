"""`forbid_ops`: the ATen operators a kernel runs, recorded while the check helpers call it.

A text check (the marker's `forbid`) misses `getattr(torch, "soft" + "max")`, a macro alias and
whatever a library the kernel calls does. This one watches what runs: torch's execution trace
observer (`torch.profiler.ExecutionTraceObserver`) hooks every operator dispatched, from Python
or from C++, on every thread of the process, so a forbidden operator the kernel reaches by any
route is named. Only the kernel's call is watched, never the reference's.

It runs in the kernel's process, so it catches a kernel that takes a shortcut, not one written
to defeat it: a kernel may stop the observer (that fails too, when it shows) or compute in
another process.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["call_watched", "forbidden_op", "ran_ops", "watching"]

T = TypeVar("T")

# Only torch's own operators: the kernel's own op may well be called `softmax`.
_ATEN = "aten::"
_CANARY = "aten::_test_string_default"


def call_watched(kernel_fn: Callable[..., Any], args: tuple[Any, ...], where: str) -> Any:
    """`kernel_fn(*args)`; in an upskill test whose marker sets `forbid_ops`, watched: an
    AssertionError naming the operator when the call ran one that a pattern matches."""
    patterns = _active_patterns()
    if not patterns:
        return kernel_fn(*args)
    names, result = ran_ops(lambda: kernel_fn(*args))
    problem = forbidden_op(names, patterns)
    if problem is not None:
        raise AssertionError(f"{where}: {problem}")
    return result


def forbidden_op(names: list[str], patterns: tuple[str, ...]) -> str | None:
    """The ATen operators in `names` that a pattern matches, in words (None: none)."""
    found = {
        name: pattern
        for name in names
        if name.startswith(_ATEN)
        for pattern in reversed(patterns)  # the first pattern that matches names it
        if re.search(pattern, name)
    }
    if not found:
        return None
    listed = ", ".join(f"{name} ({pattern!r})" for name, pattern in list(found.items())[:5])
    return (
        f"the kernel ran the ATen operator(s) {listed}, which forbid_ops forbids: it must "
        "compute the result itself"
    )


def ran_ops(call: Callable[[], T]) -> tuple[list[str], T]:
    """The names of the operators `call` ran (any thread, nested C++ calls too), and what it
    returned. An AssertionError when the record cannot be trusted: the observer stopped."""
    import torch
    from torch.profiler import ExecutionTraceObserver

    dummy = torch.empty(0)  # made before: its aten::empty is not the kernel's
    with tempfile.TemporaryDirectory(prefix="upskill-ops-") as folder:
        trace = Path(folder) / "trace.json"
        observer = ExecutionTraceObserver()
        with _quiet():
            observer.register_callback(str(trace))
            observer.start()
        try:
            result = call()
            # A canary no kernel calls: in the record only if the observer still ran after it.
            torch.ops.aten._test_string_default(dummy)
        finally:
            with _quiet():
                observer.stop()
                observer.unregister_callback()
        names = _names(trace)
    if _CANARY not in names:
        raise AssertionError(
            "the operators the kernel ran went unrecorded: the execution trace observer "
            "stopped during its call"
        )
    return [name for name in names if name != _CANARY], result


def _names(trace: Path) -> list[str]:
    """The operator names of an execution trace the kernel's process wrote: checked, as
    anything it wrote."""
    try:
        nodes = json.loads(trace.read_text(encoding="utf-8"))["nodes"]
        names = [node["name"] for node in nodes]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AssertionError(
            f"the record of the operators the kernel ran is missing or unreadable "
            f"({type(exc).__name__}): forbid_ops cannot tell what it ran"
        ) from None
    return list(dict.fromkeys(name for name in names if isinstance(name, str)))


def watching() -> bool:
    """Whether the running upskill test's marker sets `forbid_ops`."""
    return bool(_active_patterns())


def _active_patterns() -> tuple[str, ...]:
    from ..sample import active_sample
    from ..task import Task

    sample = active_sample()
    task = sample.params.task if sample is not None else None
    return task.forbid_ops if isinstance(task, Task) else ()


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide what torch logs to stderr as the observer starts and stops (never the kernel's)."""
    sys.stderr.flush()
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no /dev/null here: the lines show, nothing worse
        yield
        return
    saved = os.dup(2)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
