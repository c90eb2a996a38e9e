"""When a failed build is the toolchain's fault, not the model's: a header that a file of the
toolchain itself (torch, CUDA, Python, the system) includes is missing on this machine.

The compiler's line names the file that wanted the header, but a project can forge that line
(`#line 1 "/usr/include/stdio.h"`) or steer a real header into the missing include with its
own macros and flags. So the file is included again, alone, from an empty translation unit
with the harness's flags only: only if that fails for the same header is it the toolchain's.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from ..environ import passed_environ
from .build_files import Recipe, harness_flags, toolchain_includes

__all__ = ["toolchain_fault"]

# A compiler's fatal error, in a file named by its absolute path.
_MISSING_IN = re.compile(
    r"^(?P<file>/[^:\n]+):\d+:\d+: fatal error: (?P<header>[^:\n]+): No such file or directory",
    re.MULTILINE,
)
_SYSTEM_ROOTS = ("/usr/include", "/usr/local/include", "/usr/lib/gcc")
_PROBE_S = 120.0


def toolchain_fault(log: str, recipe: Recipe) -> str | None:
    """Why the build failed through no fault of the project (one line), or None."""
    match = _MISSING_IN.search(log)
    if match is None:
        return None
    outer, header = Path(match["file"]), match["header"]
    roots = [Path(root) for root in (*toolchain_includes(recipe), *_SYSTEM_ROOTS)]
    if recipe.cuda is not None:
        roots.append(Path(recipe.cuda.nvcc).resolve().parents[1])  # the toolkit
    if not outer.is_file() or not any(outer.resolve().is_relative_to(r) for r in roots):
        return None  # a file of the project's, or a name it made up
    failed = log[: match.start()].rpartition("FAILED: ")[2].partition("\n")[0]
    cuda = recipe.cuda is not None and failed.strip().endswith(".cu.o")
    if not _missing_alone(outer, header, recipe, cuda):
        return None
    return (
        f"the toolchain's own {outer} includes {header}, which this machine lacks: a problem "
        "of the toolchain or of pytest-upskill, not of the model's project"
    )


def _missing_alone(outer: Path, header: str, recipe: Recipe, cuda: bool) -> bool:
    """Whether including `outer` alone, with the harness's flags, misses `header` too."""
    with tempfile.TemporaryDirectory(prefix="pytest-upskill-probe-") as folder:
        probe = Path(folder) / ("probe.cu" if cuda else "probe.cpp")
        probe.write_text(f'#include "{outer}"\n')
        compiler = [recipe.toolchain.cxx]
        if cuda and recipe.cuda is not None:
            compiler = [recipe.cuda.nvcc, f"-ccbin={recipe.toolchain.cxx}"]
        command = [*compiler, *harness_flags(recipe), "-E", str(probe), "-o", "/dev/null"]
        try:
            result = subprocess.run(
                command,
                cwd=folder,
                env=passed_environ(),
                capture_output=True,
                text=True,
                timeout=_PROBE_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return f"fatal error: {header}: No such file" in result.stderr
