"""A build that fails for want of a header the toolchain's own files include is the harness's
error, not the model's failure; a project cannot make its own failure look like one. With the
real compiler: a toolchain folder (here a stand-in for Python's include folder) whose header
includes one that is not installed."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.build_files import Recipe, harness_flags
from pytest_upskill.project.faults import toolchain_fault
from pytest_upskill.project.layout import load_project
from pytest_upskill.project.toolchain import detect_toolchain
from pytest_upskill.task import Task


@pytest.fixture
def recipe(tmp_path: Path) -> Recipe:
    """The row softmax's recipe, with a toolchain folder holding `broken.h`, which includes a
    header that is not installed (as the wheels' cuda_runtime.h wanted crt/host_config.h)."""
    toolchain_dir = tmp_path / "toolchain"
    toolchain_dir.mkdir()
    (toolchain_dir / "broken.h").write_text("#include <not_installed_here.h>\n")
    (toolchain_dir / "fine.h").write_text("#define FINE 1\n")
    reference = EXAMPLES / "solutions" / "row_softmax"
    project = load_project(reference, read_project(reference), "row_softmax")
    toolchain = dataclasses.replace(detect_toolchain(), python_include=str(toolchain_dir))
    task = Task(prompt="softmax", name="row_softmax", backend="cpu")
    return Recipe(project, task, "kernel-builder", toolchain, None, "0" * 16)


def _compile(recipe: Recipe, source: str, folder: Path) -> str:
    """The log of compiling `source` as a project file, as ninja shows it."""
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "kernel.cpp").write_text(source)
    command = [recipe.toolchain.cxx, *harness_flags(recipe), "-c", "src/kernel.cpp", "-o", "k.o"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    assert done.returncode != 0, "the planted source must not compile"
    return "FAILED: obj/kernel.cpp.o\n" + done.stderr


def test_a_header_the_toolchain_includes_and_lacks_is_its_fault(
    recipe: Recipe, tmp_path: Path
) -> None:
    log = _compile(recipe, "#include <broken.h>\nint f() { return 0; }\n", tmp_path)
    fault = toolchain_fault(log, recipe)
    assert fault is not None
    assert fault.startswith(f"the toolchain's own {recipe.toolchain.python_include}/broken.h ")
    assert "includes not_installed_here.h, which this machine lacks" in fault


@pytest.mark.parametrize(
    "source",
    [
        # The project's own include of a header that is not there: its own mistake.
        "#include <not_installed_here.h>\n",
        # A forged location: the line names a toolchain file, which compiles fine alone.
        '#line 1 "{toolchain}/fine.h"\n#include <not_installed_here.h>\n',
        # A name the project made up, outside every toolchain folder.
        '#line 1 "/nonexistent/toolchain/header.h"\n#include <not_installed_here.h>\n',
    ],
    ids=["own-include", "forged-line", "made-up-file"],
)
def test_the_projects_own_missing_header_stays_its_failure(
    recipe: Recipe, tmp_path: Path, source: str
) -> None:
    source = source.format(toolchain=recipe.toolchain.python_include)
    log = _compile(recipe, source, tmp_path)
    assert "not_installed_here.h: No such file" in log
    if source.startswith("#line"):  # the compiler repeats the forged name
        forged = source.split('"')[1]
        assert f"\n{forged}:1:10: fatal error: not_installed_here.h" in log
    assert toolchain_fault(log, recipe) is None


def test_a_macro_that_steers_a_toolchain_header_stays_the_projects_failure(
    recipe: Recipe, tmp_path: Path
) -> None:
    """A header that includes a missing one only under the project's own macro."""
    toolchain = Path(recipe.toolchain.python_include)
    (toolchain / "steered.h").write_text(
        "#ifdef PROJECT_WANTS_IT\n#include <not_installed_here.h>\n#endif\n"
    )
    log = _compile(recipe, "#define PROJECT_WANTS_IT\n#include <steered.h>\n", tmp_path)
    assert f"{toolchain}/steered.h" in log
    assert toolchain_fault(log, recipe) is None
