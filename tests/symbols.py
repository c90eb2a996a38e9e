"""What an object or library defines, read with binutils' nm: the tests and the benchmarks
compare builds by it where their bytes differ only in layout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def defined_symbols(path: Path) -> list[str]:
    """The symbols a file defines, with their kinds and sizes (not their places). The
    assembler's local labels (`.LC7`: a string constant) count, but not their numbers, which
    follow the order the compiler emitted their constants in."""
    listed = subprocess.run(
        ["nm", "--defined-only", "-S", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return sorted(_unnumbered(line.split()[1:]) for line in listed.splitlines() if line.strip())


def _unnumbered(fields: list[str]) -> str:
    *kind, name = fields
    return " ".join([*kind, re.sub(r"\d+$", "", name) if name.startswith(".L") else name])
