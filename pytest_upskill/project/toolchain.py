"""Find the compilers a build needs and say how to fix what is missing."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ..errors import SampleError, SampleSkipped

__all__ = ["CudaToolchain", "Toolchain", "detect_cuda", "detect_toolchain"]


@functools.cache
def _recipe_digest() -> str:
    """A digest of the build recipe's own code: changing flags or generated files rebuilds."""
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / name).read_bytes() for name in _RECIPE)).hexdigest()


_RECIPE = ("build.py", "build_cache.py", "build_files.py", "toolchain.py")


@dataclass(frozen=True)
class Toolchain:
    """The host compiler, ninja and torch: what every build depends on besides its files."""

    cxx: str
    cxx_version: str
    ninja: str
    torch_version: str
    torch_cuda: str | None
    torch_dir: str
    python_include: str
    cxx11_abi: int

    @property
    def fingerprint(self) -> str:
        return json.dumps(
            [_recipe_digest(), self.cxx_version, self.torch_version, self.cxx11_abi, sys.version]
        )


@dataclass(frozen=True)
class CudaToolchain:
    """nvcc, and the CUDA library headers and libraries a torch CUDA extension needs."""

    nvcc: str
    release: str
    include_dirs: tuple[str, ...]
    library_dirs: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        return json.dumps([self.release, self.include_dirs])


@functools.cache
def detect_toolchain() -> Toolchain:
    """Find the host compiler and ninja; a missing tool is a SampleError naming the fix."""
    import torch

    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        raise SampleError("build", "no C++ compiler found: install g++ or set CXX")
    ninja = shutil.which("ninja")
    if ninja is None:
        try:
            import ninja as ninja_package

            ninja = str(Path(ninja_package.BIN_DIR) / "ninja")
        except ImportError:
            raise SampleError("build", "ninja is missing: pip install ninja") from None
    version = subprocess.run(
        [cxx, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return Toolchain(
        cxx=cxx,
        cxx_version=version[0] if version else cxx,
        ninja=ninja,
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        torch_dir=str(Path(torch.__file__).parent),
        python_include=sysconfig.get_paths()["include"],
        cxx11_abi=int(torch._C._GLIBCXX_USE_CXX11_ABI),
    )


def _nvcc_path() -> str | None:
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(variable)
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def _nvidia_wheel_dirs(kind: str) -> list[str]:
    """Include or lib folders of the nvidia-* wheels a CUDA build of torch brings."""
    import torch

    site = Path(torch.__file__).parent.parent / "nvidia"
    return sorted(str(path) for path in site.glob(f"**/{kind}") if path.is_dir())


@functools.cache
def detect_cuda() -> CudaToolchain:
    """Find nvcc and check it matches torch; each problem skips the sample with the fix."""
    nvcc = _nvcc_path()
    if nvcc is None:
        raise SampleSkipped(
            "build",
            "nvcc not found: install the CUDA toolkit and put nvcc on PATH or set CUDA_HOME",
        )
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"release (\d+\.\d+)", version.stdout)
    release = match.group(1) if match else "unknown"
    torch_cuda = detect_toolchain().torch_cuda
    major = release.split(".")[0]
    if torch_cuda is not None and torch_cuda.split(".")[0] != major:
        raise SampleSkipped(
            "build",
            f"torch is built for CUDA {torch_cuda} but nvcc is CUDA {release}: install a torch "
            f"built for CUDA {major} or set CUDA_HOME to a CUDA {torch_cuda} toolkit",
        )
    includes, libraries = _nvcc_dirs(nvcc)
    return CudaToolchain(
        nvcc=nvcc,
        release=release,
        # The toolkit's own first, as nvcc has them: a host file that includes
        # <cuda_runtime.h> then finds the crt/ headers the wheels do not ship.
        include_dirs=tuple(dict.fromkeys(includes + _nvidia_wheel_dirs("include"))),
        library_dirs=tuple(libraries + _nvidia_wheel_dirs("lib")),
    )


def _nvcc_dirs(nvcc: str) -> tuple[list[str], list[str]]:
    """The folders nvcc itself compiles with (its include folders, cccl among them) and links
    from (where libcudart lives, not the stubs), read from its dry run."""
    output = subprocess.run(
        [nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        name, equals, value = line.removeprefix("#$ ").partition("=")
        if equals and name in ("INCLUDES", "SYSTEM_INCLUDES", "LIBRARIES"):
            found[name] = shlex.split(value)
    includes = [flag[2:] for flag in found.get("INCLUDES", []) if flag.startswith("-I")]
    system = found.get("SYSTEM_INCLUDES", [])
    includes += [path for flag, path in itertools.pairwise(system) if flag == "-isystem"]
    libraries = [
        flag[2:]
        for flag in found.get("LIBRARIES", [])
        if flag.startswith("-L") and "stubs" not in flag
    ]
    return [os.path.normpath(p) for p in includes], [os.path.normpath(p) for p in libraries]
