"""What an object or library defines, read with binutils' nm: the tests and the benchmarks
compare builds by it where their bytes differ only in layout."""

from __future__ import annotations

import subprocess
from pathlib import Path


def defined_symbols(path: Path) -> list[str]:
    """The symbols a file defines, with their kinds and sizes (not their places)."""
    listed = subprocess.run(
        ["nm", "--defined-only", "-S", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return sorted(" ".join(line.split()[1:]) for line in listed.splitlines() if line.strip())
