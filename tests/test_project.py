from __future__ import annotations

from pathlib import Path

import pytest

from pytest_upskill.errors import SampleFailed
from pytest_upskill.project.layout import load_project, write_project

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
    merged = {**FILES, **change}
    files = {path: text for path, text in merged.items() if text is not None}
    written = write_project(files, tmp_path / "p")
    with pytest.raises(SampleFailed, match=reason) as excinfo:
        load_project(tmp_path / "p", written, "add")
    assert excinfo.value.stage == "extract"


KERNEL_BUILDER_TOML = """
[general]
name = "add"
version = 1
edition = 5
license = "Apache-2.0"
backends = ["cpu", "cuda", "metal", "rocm", "xpu"]

[general.hub]
repo-id = "kernels-test/add"

[torch]
src = ["torch-ext/torch_binding.cpp"]
cxx-flags = ["-DCANARY"]

[kernel.add_xpu]
backend = "xpu"
depends = ["torch"]
sycl-flags = ["-DX"]
src = ["kernel_src/add.cpp"]

[kernel.add_rocm]
backend = "rocm"
depends = ["torch"]
rocm-archs = ["gfx942"]
hip-flags = ["-DX"]
src = ["kernel_src/add.cu"]

[kernel.add_cuda]
backend = "cuda"
depends = ["torch"]
cuda-capabilities = ["9.0a", "8.0"]
cuda-flags = ["-DX"]
src = ["kernel_src/add.cu"]

[kernel.add]
backend = "cpu"
depends = ["torch"]
src = ["kernel_src/add.cpp"]
"""


def test_kernel_builder_edition_5_reads_without_warnings(tmp_path: Path) -> None:
    files = {**FILES, "build.toml": KERNEL_BUILDER_TOML, "kernel_src/add.cu": ""}
    project = load_project(tmp_path / "p", write_project(files, tmp_path / "p"), "add")
    assert project.warnings == ()
    assert list(project.kernels_for("cuda")) == ["add_cuda"]
    assert list(project.kernels_for("cpu")) == ["add"]
    assert project.cuda_capabilities() == ["9.0a", "8.0"]


def test_an_older_build_toml_is_read_with_warnings(tmp_path: Path) -> None:
    legacy = BUILD_TOML.replace('backends = ["cpu"]', 'backends = ["cpu"]\n[general.cuda]\n')
    legacy = legacy.replace("[general.cuda]\n", '[general.cuda]\ncapabilities = ["9.0a"]\n')
    project = load_project(
        tmp_path / "p", write_project({**FILES, "build.toml": legacy}, tmp_path / "p"), "add"
    )
    assert project.cuda_capabilities() == ["9.0a"]
    no_edition, old_capabilities = project.warnings
    assert "no [general] edition" in no_edition
    assert "[general.cuda] capabilities is an older form" in old_capabilities


def test_an_unknown_key_in_a_nested_table_is_named(tmp_path: Path) -> None:
    files = {**FILES, "build.toml": KERNEL_BUILDER_TOML.replace("repo-id", "repo")}
    written = write_project(files, tmp_path / "p")
    with pytest.raises(SampleFailed, match=r"unknown key 'general\.hub\.repo'"):
        load_project(tmp_path / "p", written, "add")
