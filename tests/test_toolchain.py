"""Toolchain detection: each thing missing or mismatched skips with the fix in one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_upskill.errors import SampleSkipped
from pytest_upskill.project.toolchain import detect_cuda, detect_toolchain


@pytest.fixture
def fresh_detection() -> Iterator[None]:
    detect_cuda.cache_clear()
    yield
    detect_cuda.cache_clear()


def fake_nvcc(directory: Path, release: str) -> Path:
    """An nvcc that only reports its release: the toolkit this machine does not have."""
    nvcc = directory / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    nvcc.chmod(0o755)
    return nvcc


def test_no_nvcc_skips_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_detection: None
) -> None:
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SampleSkipped, match=r"nvcc not found: .*PATH or set CUDA_HOME") as info:
        detect_cuda()
    assert info.value.stage == "build"


def test_cuda_home_wins_over_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_detection: None
) -> None:
    nvcc = fake_nvcc(tmp_path / "cuda", detect_toolchain().torch_cuda or "13.0")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    assert detect_cuda().nvcc == str(nvcc)


def test_a_torch_for_another_cuda_major_skips_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_detection: None
) -> None:
    torch_cuda = detect_toolchain().torch_cuda
    if torch_cuda is None:
        pytest.skip("a CPU build of torch has no CUDA version to mismatch")
    other = f"{int(torch_cuda.split('.')[0]) - 1}.8"
    fake_nvcc(tmp_path / "cuda", other)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    with pytest.raises(
        SampleSkipped,
        match=rf"torch is built for CUDA {torch_cuda} but nvcc is CUDA {other}: install a torch "
        rf"built for CUDA {other.split('.')[0]} or set CUDA_HOME",
    ):
        detect_cuda()


def test_the_real_nvcc_is_found() -> None:
    if not any(Path(d, "nvcc").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("no nvcc on this machine")
    assert detect_cuda().release.split(".")[0].isdigit()
