"""Stage `policy`: rules a project must keep before it is built.

Binding rules are kernel-builder's (ops registered through TORCH_LIBRARY_EXPAND with the
build's own namespace, no Python bindings compiled in); `binding="any"` lifts them. What
build.toml puts on compiler command lines and in build.ninja is always checked, whatever the
binding: no control characters anywhere, plain relative paths, capabilities and kernel names of
a strict shape, compiler flags from an allow-list that cannot redefine the harness's own macros.
Task rules come from the marker: a CUDA task must launch a `__global__` function of its own,
and no source may hold a pattern of `forbid` (an ATen op doing the work, a second stream).

This module applies the rules and words the refusal; `policy_toml` checks build.toml's values
and flags, `policy_sources` scans the sources.
"""

from __future__ import annotations

from ..config import Binding
from ..errors import SampleFailed
from ..task import Task
from .layout import Project
from .policy_sources import binding_problems, forbidden, launch_problem
from .policy_toml import control_characters, cuda_flags, cxx_flags, harness_defines, shapes

__all__ = ["check_project", "check_task_rules"]

_ESCAPE = "or pass --upskill-binding=any to build it anyway"
_MAX_NAMED = 5  # violations named in one reason


def check_project(project: Project, backend: str, binding: Binding) -> None:
    """Raise SampleFailed at `policy` with the first rule `project` breaks."""
    data = project.build_toml()
    for problems in (control_characters(data), shapes(data), harness_defines(data)):
        problem = next(problems, None)
        if problem is not None:
            raise SampleFailed("policy", f"build.toml: {problem}")
    cxx_flags(project, backend)
    cuda_flags(project, backend)
    if binding == "kernel-builder":
        for path, content in sorted(project.files.items()):
            for line, problem in binding_problems(path, content):
                raise SampleFailed("policy", f"{path}:{line}: {problem}; {_ESCAPE}")


def check_task_rules(project: Project, task: Task) -> None:
    """Raise SampleFailed at `policy` when the sources break the task's own rules."""
    if task.backend == "cuda" and task.require_launch:
        problem = launch_problem(project)
        if problem is not None:
            raise SampleFailed("policy", problem)
    found = forbidden(project, task.forbid)
    if found:
        named = [f"{path}:{line} uses {text!r}" for path, line, text in found[:_MAX_NAMED]]
        more = f" and {len(found) - _MAX_NAMED} more" if len(found) > _MAX_NAMED else ""
        raise SampleFailed(
            "policy",
            f"{'; '.join(named)}{more}: the task forbids {', '.join(map(repr, task.forbid))}",
        )
