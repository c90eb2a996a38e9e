from __future__ import annotations

from pathlib import Path

import pytest

from pytest_upskill.errors import SampleFailed
from pytest_upskill.project import load_project, write_project

BUILD_TOML = """
[general]
name = "add"
backends = ["cpu"]

[torch]
src = ["torch-ext/torch_binding.cpp"]

[kernel.add]
backend = "cpu"
depends = ["torch"]
src = ["kernel_src/add.cpp"]
cxx-flags = ["-O3"]
"""

FILES = {
    "build.toml": BUILD_TOML,
    "torch-ext/torch_binding.cpp": "",
    "torch-ext/add/__init__.py": "",
    "kernel_src/add.cpp": "",
}


def test_valid_project(tmp_path: Path) -> None:
    files = write_project(FILES, tmp_path / "p")
    project = load_project(tmp_path / "p", files, "add")
    assert (tmp_path / "p" / "kernel_src" / "add.cpp").is_file()
    assert list(project.kernels_for("cpu")) == ["add"]
    assert project.kernels_for("cuda") == {}
    assert project.config.kernel["add"].cxx_flags == ["-O3"]


def test_a_project_nested_in_one_folder_is_unnested(tmp_path: Path) -> None:
    nested = {f"add_kernel/{path}": text for path, text in FILES.items()}
    files = write_project(nested, tmp_path / "p")
    assert set(files) == set(FILES)
    assert (tmp_path / "p" / "build.toml").is_file()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"build.toml": None}, "no build.toml"),
        ({"build.toml": "[general\n"}, "build.toml is not valid TOML"),
        ({"build.toml": BUILD_TOML + "\n[extra]\nx = 1\n"}, "unknown key 'extra'"),
        (
            {"build.toml": BUILD_TOML.replace("depends", "dependz")},
            "unknown key 'kernel.add.dependz'",
        ),
        ({"build.toml": "[torch]\nsrc = []\n"}, "'general' is required"),
        ({"torch-ext/add/__init__.py": None}, "no torch-ext/add/__init__.py"),
        (
            {"kernel_src/add.cpp": None},
            "names source files the reply does not hold: kernel_src/add.cpp",
        ),
    ],
)
def test_invalid_projects_fail_at_extract(
    tmp_path: Path, change: dict[str, str | None], reason: str
) -> None:
    files = {**FILES, **change}
    files = {path: text for path, text in files.items() if text is not None}
    written = write_project(files, tmp_path / "p")
    with pytest.raises(SampleFailed, match=reason) as excinfo:
        load_project(tmp_path / "p", written, "add")
    assert excinfo.value.stage == "extract"
