"""Build cost of one new kernel: the plugin's build against today's recipe (the same build
without precompiled headers) and against `load_inline`, as KernelBench builds.

The kernel is built cold (a source no cache has seen) each way, in one run:
- today: `build_project` with precompiled headers off, the baseline;
- upskill: `build_project` as it is; the precompiled headers it compiles against are made once
  before the rounds, by two builds (the second to want them makes them), shown apart: they
  serve every later build on this toolchain. Where g++ has its plugin headers, they hold the
  templates their headers instantiate;
- g++'s precompiled headers: the same, with headers as g++ makes them alone (no plugin);
- load_inline: the kernel's source with torch/extension.h and a pybind11 binding.
The CPU kernel is the example row softmax with `<torch/all.h>` first in both sources (with
--cuda, the example H100 RMSNorm for sm_90a, which needs a CUDA build of torch). The objects
and libraries are checked equal to today's: byte for byte, or, compiled against a header that
holds its instantiations, the same symbols with the same sizes. Runs alternate and medians
are kept: these machines are noisy; the ratio is the median of each round's (its builds run
back to back). Then the warm case: a cache hit in a fresh process that has
imported torch, as the first upskill test of a new session sees it.
Targets: compiler CPU at least 4x less than today's (2x for the RMSNorm); cold wall time at least
3x shorter than load_inline's; warm under 0.5 s.
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
from typing import TYPE_CHECKING, Any, Literal

from torch_all import REPO, all_h_project

sys.path.insert(0, str(REPO / "tests"))

from symbols import defined_symbols

if TYPE_CHECKING:
    from pytest_upskill.project.build import Build

# KernelBench's recipe: torch/extension.h in the source, pybind11 bindings generated.
_EXTENSION_H = "#include <torch/extension.h>\n"


@dataclass(frozen=True)
class Kernel:
    name: str
    backend: Literal["cuda", "cpu"]
    source: str  # the kernel's source file in its project
    declaration: str  # what load_inline's generated binding needs to see
    target: float  # how many times less compiler CPU than today's

    def fresh_files(self) -> dict[str, str]:
        """The project, with a comment no cache has seen."""
        if self.backend == "cpu":
            return all_h_project(str(uuid.uuid4()))
        from pytest_upskill.generate.providers.oracle import read_project

        files = read_project(REPO / "examples" / "solutions" / self.name)
        files[self.source] = f"// {uuid.uuid4()}\n" + files[self.source]
        return files


ROW_SOFTMAX = Kernel(
    "row_softmax",
    "cpu",
    "kernel_src/row_softmax.cpp",
    "at::Tensor row_softmax(const at::Tensor& x);",
    4.0,
)
RMS_NORM = Kernel(
    "rms_norm",
    "cuda",
    "kernel_src/rms_norm.cu",
    "at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);",
    2.0,
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


def cold(
    kernel: Kernel,
    files: dict[str, str],
    root: Path,
    cache: Path,
    pch: bool,
    instantiate: bool = True,
) -> Build:
    """A build of `files` in the sandbox, as a session builds them."""
    from pytest_upskill.project.build import build_project
    from pytest_upskill.project.layout import load_project, write_project
    from pytest_upskill.run.sandbox import mechanism
    from pytest_upskill.task import Task

    task = Task(prompt="p", name=kernel.name, backend=kernel.backend)
    project = load_project(root, write_project(files, root), kernel.name)
    build = build_project(
        project,
        task,
        cache,
        900,
        sandbox=mechanism(),
        precompiled_headers=pch,
        instantiate=instantiate,
    )
    assert build.ok, build.reason
    assert not build.compile_only, "--cuda needs a CUDA build of torch, to link as load_inline does"
    return build


def same_code(today: Build, ours: Build) -> str:
    """The same C++ objects, byte for byte, and the same library where there is no CUDA object
    (nvcc names its temporary files at random, and those names reach its objects, so two
    compiles of one .cu never match); objects compiled against a header that holds its
    instantiations define the same symbols with the same sizes, laid out in another order.
    What was compared, and how."""
    objects = Path(today.directory, "obj")
    cuda = any(objects.rglob("*.cu.o"))
    outputs = [p for p in objects.rglob("*.o") if not p.name.endswith(".cu.o")]
    if not cuda:
        outputs += Path(today.directory).rglob("*.so")
    assert outputs, "no output to compare"
    laid_out = []
    for path in outputs:
        other = Path(ours.directory) / path.relative_to(today.directory)
        if other.read_bytes() != path.read_bytes():
            assert defined_symbols(other) == defined_symbols(path), f"{path.name} differs"
            laid_out.append(path.name)
    same = [path.name for path in outputs if path.name not in laid_out]
    return "; ".join(
        f"{how}: {', '.join(names)}"
        for how, names in (("byte for byte", same), ("symbols and sizes", laid_out))
        if names
    )


def load_inline_cold(kernel: Kernel, work: Path) -> float:
    from torch.utils.cpp_extension import load_inline

    source = _EXTENSION_H + kernel.fresh_files()[kernel.source]
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
    todays: list[Build] = []
    plains: list[Build] = []  # precompiled headers as g++ makes them alone
    ours: list[Build] = []
    inline: list[float] = []
    warms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        # Caches of their own: a build's key does not tell how its headers were precompiled.
        work, shared, shared_plain = Path(tmp), Path(tmp) / "builds", Path(tmp) / "plain"
        start = time.perf_counter()
        for wanted in ("once", "again"):  # made when a second build wants them
            for cache, instantiate in ((shared_plain, False), (shared, True)):
                root = work / f"headers-{wanted}-{instantiate}"
                cold(kernel, kernel.fresh_files(), root, cache, True, instantiate)
        print(f"precompiled headers, made once: {time.perf_counter() - start:.1f} s", flush=True)
        for index in range(arguments.rounds):
            files = kernel.fresh_files()
            todays.append(cold(kernel, files, work / f"today-{index}", work / f"c{index}", False))
            plains.append(cold(kernel, files, work / f"plain-{index}", shared_plain, True, False))
            ours.append(cold(kernel, files, work / f"upskill-{index}", shared, pch=True))
            same_code(todays[-1], plains[-1])
            compared = same_code(todays[-1], ours[-1])
            inline_dir = work / f"inline-{index}"
            inline_dir.mkdir()
            inline.append(load_inline_cold(kernel, inline_dir))
            warms.append(warm(kernel, work / f"upskill-{index}", shared))
            print(
                f"round {index + 1}: compiler CPU today {todays[-1].cpu_s:.1f} s, g++'s "
                f"precompiled headers {plains[-1].cpu_s:.1f} s, upskill {ours[-1].cpu_s:.1f} s; "
                f"wall today {todays[-1].seconds:.2f} s, upskill {ours[-1].seconds:.2f} s, "
                f"load_inline {inline[-1]:.2f} s; warm {warms[-1]:.3f} s; equal ({compared})",
                flush=True,
            )
    median = statistics.median
    today_cpu, our_cpu = median(b.cpu_s for b in todays), median(b.cpu_s for b in ours)
    our_wall = median(b.seconds for b in ours)
    print(f"{kernel.name}, cold build, median of {arguments.rounds}:")
    plain_cpu = median(b.cpu_s for b in plains)
    print(
        f"  compiler CPU: today {today_cpu:.1f} s, g++'s precompiled headers {plain_cpu:.1f} s, "
        f"upskill {our_cpu:.1f} s"
    )
    print(f"  wall: upskill {our_wall:.2f} s, load_inline {median(inline):.2f} s")
    print(f"load_inline / upskill, wall: {median(inline) / our_wall:.2f}x (target: at least 3x)")
    print(f"warm cache hit: {median(warms):.3f} s (target: under 0.5 s)")
    # Each round's builds run back to back: their ratios drift less with the machine's load
    # than the medians do apart.
    ratios = [today.cpu_s / our.cpu_s for today, our in zip(todays, ours, strict=True)]
    plain_ratios = [today.cpu_s / plain.cpu_s for today, plain in zip(todays, plains, strict=True)]
    print(
        f"  today / g++'s precompiled headers, each round: "
        f"{', '.join(f'{r:.2f}x' for r in plain_ratios)}; median {median(plain_ratios):.2f}x"
    )
    print(f"  today / upskill, each round: {', '.join(f'{r:.2f}x' for r in ratios)}")
    print(
        f"build: compiler CPU today {today_cpu:.1f} s, upskill {our_cpu:.1f} s, "
        f"{median(ratios):.2f}x less, the median of the rounds' ratios "
        f"(target: at least {kernel.target:g}x)"
    )


if __name__ == "__main__":
    main()
