"""Build time of one kernel: this plugin's build against `load_inline`, as KernelBench builds.

The same kernel (the example row softmax; with --cuda the example H100 RMSNorm, which needs a
CUDA build of torch) is built two ways, each cold (fresh build directory, source never seen):
- upskill: the example's kernel-builder project (torch/library.h, ATen headers), through
  `build_project`: our own ninja file, no setuptools.
- load_inline: the same kernel source with torch/extension.h and a pybind11 binding
  (`functions=[...]`), through `torch.utils.cpp_extension.load_inline`.
Runs alternate (upskill, load_inline, upskill, ...) and medians are kept: these machines are
noisy. Then the warm case: a cache hit, in a fresh process that has imported torch, as the first
upskill test of a new session sees it.
Targets: cold at least 3x faster than load_inline; warm under 0.5 s.
Usage: python benchmarks/build.py [--rounds 3] [--cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]

# KernelBench's recipe: torch/extension.h in the source, pybind11 bindings generated.
_EXTENSION_H = "#include <torch/extension.h>\n"


@dataclass(frozen=True)
class Kernel:
    name: str
    backend: Literal["cuda", "cpu"]
    source: str  # the kernel's source file in its project
    declaration: str  # what load_inline's generated binding needs to see

    @property
    def project(self) -> Path:
        return REPO / "examples" / "solutions" / self.name


ROW_SOFTMAX = Kernel(
    "row_softmax",
    "cpu",
    "kernel_src/row_softmax.cpp",
    "at::Tensor row_softmax(const at::Tensor& x);",
)
RMS_NORM = Kernel(
    "rms_norm",
    "cuda",
    "kernel_src/rms_norm.cu",
    "at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);",
)

_WARM = """
import sys, time
from pathlib import Path
import torch  # a session has imported it by its first upskill test
from pytest_upskill.project.build import build_project
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.layout import load_project
from pytest_upskill.task import Task
root, cache, name, backend = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
start = time.perf_counter()
project = load_project(root, read_project(root), name)
build = build_project(project, Task(prompt="p", name=name, backend=backend), cache, 900)
assert build.ok and build.cached, build.reason
print(time.perf_counter() - start)
"""


def fresh_files(kernel: Kernel) -> dict[str, str]:
    """The example project with a comment no cache has seen."""
    from pytest_upskill.generate.providers.oracle import read_project

    files = read_project(kernel.project)
    files[kernel.source] = f"// {uuid.uuid4()}\n" + files[kernel.source]
    return files


def upskill_cold(kernel: Kernel, work: Path) -> tuple[float, Path, Path]:
    from pytest_upskill.project.build import build_project
    from pytest_upskill.project.layout import load_project, write_project
    from pytest_upskill.task import Task

    root, cache = work / "project", work / "cache"
    task = Task(prompt="p", name=kernel.name, backend=kernel.backend)
    start = time.perf_counter()
    project = load_project(root, write_project(fresh_files(kernel), root), kernel.name)
    build = build_project(project, task, cache, 900)
    seconds = time.perf_counter() - start
    assert build.ok, build.reason
    assert not build.compile_only, "--cuda needs a CUDA build of torch, to link as load_inline does"
    return seconds, root, cache


def load_inline_cold(kernel: Kernel, work: Path) -> float:
    from torch.utils.cpp_extension import load_inline

    source = _EXTENSION_H + fresh_files(kernel)[kernel.source]
    sources: dict[str, Any] = {"cpp_sources": [source]}
    if kernel.backend == "cuda":
        sources = {
            "cpp_sources": [_EXTENSION_H + kernel.declaration],
            "cuda_sources": [source],
            "extra_cuda_cflags": ["-gencode=arch=compute_90a,code=sm_90a"],
        }
    start = time.perf_counter()
    module = load_inline(  # type: ignore[no-untyped-call]  # torch leaves it untyped
        name=f"{kernel.name}_{uuid.uuid4().hex[:8]}",
        functions=[kernel.name],
        build_directory=str(work),
        verbose=False,
        **sources,
    )
    seconds = time.perf_counter() - start
    assert hasattr(module, kernel.name)
    return seconds


def warm(kernel: Kernel, root: Path, cache: Path) -> float:
    output = subprocess.run(
        [sys.executable, "-c", _WARM, str(root), str(cache), kernel.name, kernel.backend],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(output.strip().splitlines()[-1])


def cuda_home() -> str:
    """The toolkit nvcc belongs to, from the folder nvcc links libcudart from."""
    from pytest_upskill.project.toolchain import detect_cuda

    for library_dir in detect_cuda().library_dirs:
        for parent in Path(library_dir).parents:
            if (parent / "bin" / "nvcc").exists():
                return str(parent)
    raise SystemExit("set CUDA_HOME: cannot tell which toolkit nvcc belongs to")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cuda", action="store_true", help="the H100 RMSNorm instead")
    arguments = parser.parse_args()
    kernel = RMS_NORM if arguments.cuda else ROW_SOFTMAX
    if arguments.cuda and "CUDA_HOME" not in os.environ:
        # load_inline finds the toolkit only through CUDA_HOME (or guesses from nvcc's folder).
        os.environ["CUDA_HOME"] = cuda_home()
    ours: list[float] = []
    theirs: list[float] = []
    warms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(arguments.rounds):
            seconds, root, cache = upskill_cold(kernel, Path(tmp) / f"upskill-{index}")
            ours.append(seconds)
            inline_dir = Path(tmp) / f"inline-{index}"
            inline_dir.mkdir()
            theirs.append(load_inline_cold(kernel, inline_dir))
            warms.append(warm(kernel, root, cache))
            print(
                f"round {index + 1}: upskill {ours[-1]:.2f} s, load_inline {theirs[-1]:.2f} s, "
                f"warm {warms[-1]:.3f} s",
                flush=True,
            )
    cold, inline, hit = (statistics.median(x) for x in (ours, theirs, warms))
    rounds = arguments.rounds
    print(f"{kernel.name}, cold build, median of {rounds}:")
    print(f"  upskill {cold:.2f} s, load_inline {inline:.2f} s")
    print(f"load_inline / upskill: {inline / cold:.2f}x (target: at least 3x)")
    print(f"warm cache hit, median of {rounds}: {hit:.3f} s (target: under 0.5 s)")


if __name__ == "__main__":
    main()
