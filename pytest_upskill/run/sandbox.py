"""One sandbox for every process that touches generated code: what it may read and write, its
environment, and the command that starts a program inside it.

bubblewrap first: new user, PID, network, IPC and UTS namespaces, no capabilities, its own
session, a minimal `/dev` (and the NVIDIA device nodes only for a GPU), read-only binds of what
the program needs, a private `/tmp`. Inside it, and where bubblewrap cannot run, `confine` adds
Landlock (reads and writes beneath the same allow-list), a seccomp filter and resource limits.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .landlock import abi_version

__all__ = [
    "Limits",
    "Mechanism",
    "Sandbox",
    "gpu_devices",
    "mechanism",
    "python_paths",
    "system_paths",
]

Mechanism = Literal["bubblewrap", "landlock"]

# Files of /etc a compiler, Python and torch read; the rest of /etc (shadow, ssh keys, cloud
# settings) stays out.
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "os-release",
)
# Top-level folders that merged-/usr systems make links into /usr.
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps/*", "/dev/dri/*")


@dataclass(frozen=True)
class Limits:
    """Resource limits of everything inside one sandbox."""

    processes: int = 4096  # RLIMIT_NPROC: a fork bomb stops here
    file_bytes: int = 4 << 30  # RLIMIT_FSIZE: the largest file it may write
    tmp_bytes: int = 1 << 30  # the private /tmp and /dev/shm, each (bubblewrap)


@dataclass(frozen=True)
class Sandbox:
    """What a sandboxed program may touch. Paths that do not exist are left out."""

    readable: tuple[Path, ...]
    writable: tuple[Path, ...]
    environ: Mapping[str, str]
    cwd: Path
    gpu: bool = False
    limits: Limits = field(default_factory=Limits)
    # Folders of this machine mounted writable at other paths inside (bubblewrap only): an
    # agent's workspace and home, the same wherever the session keeps them.
    places: tuple[tuple[Path, Path], ...] = ()
    # Internet sockets inside the sandbox's own network namespace (--unshare-all), which
    # reaches nothing but its loopback (bubblewrap only): an agent CLI and its bridge to the
    # model's proxy.
    network: bool = False

    def command(self, argv: list[str], how: Mechanism, usage: Path | None = None) -> list[str]:
        """`argv`, started inside this sandbox: under bubblewrap, then `confine` (Landlock,
        seccomp, limits) before it executes `argv`; `usage`: a writable file where `confine`
        writes the CPU seconds of all `argv` ran, once it has ended."""
        inner = [sys.executable, "-m", "pytest_upskill.run.confine", self.to_json(usage), "--"]
        inner += argv
        if how == "landlock":
            if self.places or self.network:
                raise ValueError("places and network need bubblewrap")
            return inner
        return [*self._bwrap(), "--", *inner]

    def to_json(self, usage: Path | None = None) -> str:
        from .confine import Confinement

        return Confinement(
            readable=[str(p) for p in self.readable],
            writable=[str(p) for p in (*self.writable, *(inside for _, inside in self.places))],
            devices=list(self.devices()),
            processes=self.limits.processes,
            file_bytes=self.limits.file_bytes,
            network=self.network,
            usage=str(usage) if usage else None,
        ).model_dump_json()

    def devices(self) -> list[str]:
        return [*_DEVICES, *(gpu_devices() if self.gpu else [])]

    def _bwrap(self) -> list[str]:
        args = [
            shutil.which("bwrap") or "bwrap",
            "--unshare-all",  # user (where it can), PID, network, IPC, UTS, cgroup
            "--die-with-parent",
            "--new-session",  # no controlling terminal: no TIOCSTI into the user's
            "--cap-drop",
            "ALL",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(self.limits.tmp_bytes),
            "--tmpfs",
            "/dev/shm",
            "--size",
            str(self.limits.tmp_bytes),
            "--tmpfs",
            "/tmp",
        ]
        for name in _ROOT_LINKS:
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        binds = [(p, "--ro-bind") for p in self.readable] + [(p, "--bind") for p in self.writable]
        seen = set()
        # Parents before children, so a writable folder inside a readable one stays writable;
        # /proc and /dev are the sandbox's own, mounted above.
        for path, how in sorted(binds, key=lambda bind: len(bind[0].parts)):
            if not path.exists() or (path, how) in seen or str(path) in ("/proc", "/dev"):
                continue
            seen.add((path, how))
            real = path.resolve()
            args += [how, str(real), str(real)]
            if real != path.absolute():
                args += [how, str(real), str(path.absolute())]
        for outside, inside in self.places:
            args += ["--bind", str(outside.resolve()), str(inside)]
        if self.gpu:
            for device in gpu_devices():
                args += ["--dev-bind", device, device]
        # The working folder exists inside even where none of its files may be read.
        return [*args, "--dir", str(self.cwd), "--chdir", str(self.cwd)]


def system_paths() -> list[Path]:
    """What every sandboxed program reads: the system's programs and libraries, a few files of
    /etc, /sys (CPU and GPU topology), and the CUDA toolkit."""
    paths = [Path("/usr"), Path("/sys"), Path("/proc"), *(Path("/etc") / name for name in _ETC)]
    paths += [Path("/") / name for name in _ROOT_LINKS]
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            paths.append(Path(os.environ[variable]))
    nvcc = shutil.which("nvcc")
    if nvcc:
        paths.append(Path(nvcc).resolve().parent.parent)
    return paths


def python_paths(*, imports: bool = False) -> list[Path]:
    """This Python: its prefixes, its site-packages (torch's headers and libraries among them)
    and this plugin; with `imports`, every folder on `sys.path` too (the user's tests and
    editable installs, which a build has no need to read)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    paths.add(Path(sys.executable).resolve().parent.parent)
    paths.update(Path(folder) for folder in site.getsitepackages())
    if site.ENABLE_USER_SITE:  # ~/.local/lib/pythonX.Y/site-packages, outside a venv
        paths.add(Path(site.getusersitepackages()))
    paths.add(Path(__file__).resolve().parents[1])  # this plugin, wherever it is installed
    if imports:
        paths.update(Path(entry).absolute() for entry in sys.path if entry)
    return sorted(paths)


def gpu_devices() -> list[str]:
    """The NVIDIA device nodes of this machine (none where there is no GPU)."""
    return sorted(path for pattern in _GPU_DEVICES for path in glob.glob(pattern))


@functools.cache
def mechanism() -> Mechanism | None:
    """The strongest sandbox this machine offers: bubblewrap where it starts a program in new
    namespaces, else Landlock; None where neither works. `PYTEST_UPSKILL_SANDBOX=landlock`
    asks for the fallback."""
    forced = os.environ.get("PYTEST_UPSKILL_SANDBOX")  # to try the fallback where both work
    if forced == "landlock":
        return "landlock" if abi_version() >= 1 else None
    bwrap = shutil.which("bwrap")
    if bwrap is not None:
        probe = Sandbox((Path("/usr"),), (), {}, Path("/"))
        command = [*probe._bwrap(), "--", "/usr/bin/true"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None and done.returncode == 0:
            return "bubblewrap"
    return "landlock" if abi_version() >= 1 else None
