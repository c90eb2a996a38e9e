from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# Imported once, before any test: a `pytester` test drops from sys.modules what was imported
# while it ran, and torch imported a second time in one process corrupts it (a segfault later).
import torch  # noqa: F401

from pytest_upskill.generate.providers.oracle import read_project

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# Shared by every test and xdist worker (builds are locked per key), and kept between runs.
BUILD_DIR = REPO / ".upskill" / "test-builds"
# `python -m pytest`, which Ctrl-C interrupts even where SIGINT is ignored here: a shell that is
# not interactive starts its background jobs (`.ci/run &`) with SIGINT ignored, and every child
# inherits that, Python included.
INTERRUPTIBLE_PYTEST = [
    sys.executable,
    "-c",
    "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.exit(pytest.console_main())",
]


@pytest.fixture
def reference(pytester: pytest.Pytester) -> Path:
    """A copy of the examples' row softmax project in the pytester directory, to plant bugs in."""
    target = pytester.path / "solutions" / "row_softmax"
    shutil.copytree(EXAMPLES / "solutions" / "row_softmax", target)
    return target


@pytest.fixture
def broken(reference: Path) -> Path:
    """A second copy of the reference, next to the good one, to plant a bug in."""
    target = reference.parent / "broken"
    target.mkdir()
    for relative, text in read_project(reference).items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(text)
    return target


def plant(reference: Path, relative: str, old: str, new: str) -> None:
    """Replace `old` (which must be there) by `new` in one file of a reference project."""
    path = reference / relative
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.fixture
def upskill_args() -> list[str]:
    """Arguments every pytester run of an upskill suite gets. Without the third-party plugins
    no such run uses: each process a run starts (its kernel process, its xdist workers) would
    import them again, and rewrite their asserts again where no bytecode is written (1 s)."""
    unused = ["-p", "no:hypothesispytest", "-p", "no:anyio"]
    return [f"--upskill-build-dir={BUILD_DIR}", "-p", "no:cacheprovider", *unused]


ROW_SOFTMAX_TEST = """
import pytest
import torch

@pytest.mark.upskill(
    "Softmax of each row of a 2-D float32 tensor. Expose row_softmax(x).",
    name="row_softmax", backend="cpu", reference="solutions/row_softmax",
)
def test_row_softmax(kernel):
    x = torch.randn(8, 33)
    torch.testing.assert_close(kernel.row_softmax(x), torch.softmax(x, dim=-1))
"""
