"""Precompiled torch headers: the header cost every project pays, paid once per toolchain.

A C++ source whose first directive includes one of torch's umbrella headers (`<torch/all.h>`,
`<torch/library.h>`, ...) is compiled against that header's precompiled form, made once per
toolchain, flags and header text in `pch/` beside the builds, by the build's own sandbox, when
a second build wants it (a build that finds another process making it compiles without it,
rather than wait). One no build used for two weeks goes when another is made.

What gets compiled does not change: the precompiled header is g++'s own (`.gch`, which g++
uses only where its flags and the macros it saw match); its folder holds a copy of the header
and comes first among the system folders, after the project's own; a source with flags of its
own in build.toml, or a project that holds a header with the name of any header the
precompiled one read or probed for (`__has_include`, whose answer the `.gch` keeps), compiles
as before. Where g++ can load the plugin of `instantiate`, the header also holds the templates
its headers instantiate (made with it, or as g++ makes it alone where that fails).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import SampleFailed
from ..paths import write_json_atomically
from ..run.compile import KILLED, NinjaRun, run_ninja
from ..run.sandbox import Mechanism
from .escape import ninja_args, ninja_path
from .includes import depfile_paths, probed
from .instantiate import PRAGMA, instantiating_plugin
from .toolchain import Toolchain

__all__ = [
    "PRECOMPILED",
    "Precompiled",
    "evict_unused",
    "forget_given_up",
    "precompiled_header",
    "shadowed",
]

# The headers bindings and kernels include first, largest first.
PRECOMPILED = (
    "torch/all.h",
    "torch/extension.h",
    "torch/torch.h",
    "torch/library.h",
    "ATen/ATen.h",
    "ATen/Tensor.h",
    "ATen/core/Tensor.h",
)
_FORMAT = 3  # of a pch folder: part of its key
# A precompiled header no build used for this long goes when another is made (each is 0.1 to
# 1.1 GB; a torch or compiler update leaves the old ones unused for good).
UNUSED_S = 14 * 24 * 3600.0
_KEY = re.compile(r"[0-9a-f]{16}")
# Headers this process gave up on: out of time, memory or processes (maybe not in another).
_GAVE_UP: set[Path] = set()
_CHECKED: dict[Path, Precompiled] = {}  # made headers found unchanged, by include folder


@dataclass(frozen=True)
class Precompiled:
    """A made precompiled header: the folder to put first among the system folders (it holds
    the header's copy and its `.gch`), and every header it read or probed for, as included
    (`c10/...`)."""

    folder: Path
    header: str
    origin: str  # the system folder that holds the original header
    reads: frozenset[str]

    @property
    def prefix_map(self) -> str:
        """`__FILE__` in the copy reads as in the original."""
        return f"-fmacro-prefix-map={self.folder}={self.origin}"


def shadowed(
    precompiled: Precompiled, source: str, quoted: bool, files: Iterable[str], includes: list[str]
) -> bool:
    """Whether a project's own file could stand in for a header the `.gch` read: one with the
    same name in a folder the project puts on the include path (or beside `source`, for a
    quoted include), which the real compile would read instead."""
    folders = [os.path.normpath(folder) for folder in includes]
    if quoted:
        folders.append(os.path.normpath(os.path.dirname(source)))
    prefixes = ["" if folder == "." else folder + "/" for folder in folders]
    return any(
        path.startswith(prefix) and path[len(prefix) :] in precompiled.reads
        for path in files
        for prefix in prefixes
    )


def forget_given_up() -> None:
    """A new session tries again what an earlier one in this process gave up on, and checks
    again that what was made is unchanged."""
    _GAVE_UP.clear()
    _CHECKED.clear()


def _key(header: str, text: bytes, flags: list[str], toolchain: Toolchain, plugin: bool) -> str:
    digest = hashlib.sha256(f"{_FORMAT}\0{plugin}\0".encode())
    for part in (toolchain.fingerprint, toolchain.cxx, header, *flags):
        digest.update(part.encode() + b"\0")
    digest.update(text)
    return digest.hexdigest()[:16]


def precompiled_header(
    header: str,
    flags: list[str],
    system_includes: list[str],
    toolchain: Toolchain,
    root: Path,
    timeout_s: float,
    sandbox: Mechanism | None,
    cancel: threading.Event | None = None,
    at_once: bool = False,
    nice: int = 0,
    wanted_by: str = "",
    instantiate: bool = True,
) -> Precompiled | None:
    """`header` precompiled with `flags` (the sources' flags less the project's own folders
    and the define that names the build), made under `root` unless a process made it before;
    None where it cannot serve now: wanted for the first time (made when another build wants
    it, or `at_once`; `wanted_by` names the build that wants it: a build ahead and its test's
    are one), not in the system folders, being made by another process (this build compiles
    without it rather than wait), or not made (g++ failed, or it read a header from a folder
    this cannot tell). `cancel` stops the making (SampleError); `nice`: its priority, as
    `run_ninja`'s; `instantiate`: with the instantiating plugin where g++ can load one."""
    origin = next((d for d in system_includes if (Path(d) / header).is_file()), None)
    if origin is None:
        return None
    text = (Path(origin) / header).read_bytes()
    plugin = (
        instantiating_plugin(toolchain.cxx, toolchain.fingerprint, root) if instantiate else None
    )
    folder = root / _key(header, text, flags, toolchain, plugin is not None)
    wanted = Precompiled(folder / "include", header, origin, frozenset())
    made = _made(wanted)
    if made is not None or (folder / "failed").exists() or folder in _GAVE_UP:
        return made
    root.mkdir(parents=True, exist_ok=True)
    if not (_wanted_before(folder, wanted_by) or at_once):
        return None
    lock = FileLock(f"{folder}.lock")
    try:
        lock.acquire(timeout=0)  # one maker across processes; the others go on without it
    except Timeout:
        return None
    try:
        made = _made(wanted)
        if made is None and not (folder / "failed").exists():
            # Its folder first, as the sources have it: the header may include itself.
            flags = ["-isystem", str(wanted.folder), *flags, wanted.prefix_map]
            roots = [str(wanted.folder), *system_includes, *_compiler_folders(toolchain.cxx)]
            making = _Making(toolchain, timeout_s, sandbox, cancel, nice, plugin)
            made = _make(wanted, text, flags, roots, making)
            evict_unused(root)
    finally:
        lock.release()
    return made


def _wanted_before(folder: Path, by: str) -> bool:
    """Whether another build than `by` wanted this header before; if none did, `by` is marked
    as the first. A header costs two or three compiles of a source to make: one that a single
    build wants (a header no other project starts with) is not worth making."""
    marker = Path(f"{folder}.wanted")
    try:
        return marker.read_text(errors="replace") != by
    except FileNotFoundError:
        pass
    note = Path(f"{folder}.wanted-{os.getpid()}-{threading.get_ident()}")
    note.write_text(by)
    try:
        os.link(note, marker)  # the marker appears whole, and only once
    except FileExistsError:
        return marker.read_text(errors="replace") != by
    finally:
        note.unlink()
    return False


def evict_unused(root: Path, now: float | None = None) -> None:
    """Remove the precompiled headers under `root` that no build used for `UNUSED_S` (their
    `made` is touched when a process first uses them), each under its own lock: one being
    made stays; so do the marks of headers wanted lately. (A compile racing the removal still
    compiles: its `-isystem` folder then lacks the copy, and g++ reads torch's header.)"""
    now = time.time() if now is None else now
    entries = list(root.iterdir()) if root.is_dir() else []
    for folder in entries:
        if not _KEY.fullmatch(folder.name) or folder.is_symlink() or not folder.is_dir():
            continue
        lock = FileLock(f"{folder}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            last = max(_mtime(folder / "made"), _mtime(folder))
            if now - last > UNUSED_S:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            lock.release()
    # The marks of headers gone, or wanted once and never again (a few bytes each).
    for mark in entries:
        key = mark.name.removesuffix(".wanted")
        unused = now - _mtime(mark) > UNUSED_S and not (root / key).exists()
        if key != mark.name and _KEY.fullmatch(key) and unused:
            with contextlib.suppress(OSError):
                mark.unlink()


def _mtime(path: Path) -> float:
    try:
        return path.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _made(wanted: Precompiled) -> Precompiled | None:
    """`wanted`, with the headers it read, if it was made and none of them changed since, nor
    what its probes find (g++ does not check: a torch or system update with the same version
    would go unseen)."""
    if wanted.folder in _CHECKED:
        return _CHECKED[wanted.folder]
    try:
        made = json.loads((wanted.folder.parent / "made").read_text())
        reads, files = made["reads"], made["files"]
        for path, (size, mtime) in files.items():
            found = os.stat(path)
            if (found.st_size, found.st_mtime_ns) != (size, mtime):
                return None
        if any(os.path.exists(path) != was for path, was in made["probes"].items()):
            return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    with contextlib.suppress(OSError):  # used now: not evicted (another user's stays theirs)
        os.utime(wanted.folder.parent / "made")
    _CHECKED[wanted.folder] = replace(wanted, reads=frozenset(map(str, reads)))
    return _CHECKED[wanted.folder]


@dataclass(frozen=True)
class _Making:
    """How a header is made: the toolchain, and how its compiler runs."""

    toolchain: Toolchain
    timeout_s: float
    sandbox: Mechanism | None
    cancel: threading.Event | None
    nice: int
    plugin: Path | None  # the instantiating plugin, where g++ can load one


def _make(
    wanted: Precompiled, text: bytes, flags: list[str], roots: list[str], how: _Making
) -> Precompiled | None:
    """Compile the header's copy in the sandbox; `made` (the headers it read, and their sizes
    and times) or `failed` (why not) is written last. The folder on the include path holds
    the copy and its `.gch` only."""
    folder = wanted.folder.parent
    ran = _compile(wanted, text, flags, roots, how)
    if ran is not None and ran.returncode != 0 and how.plugin:  # out of memory, say
        ran = _compile(wanted, text, flags, roots, replace(how, plugin=None))  # as g++ alone
    if ran is None:  # out of time: not again in this process, but maybe in another
        shutil.rmtree(folder, ignore_errors=True)
        _GAVE_UP.add(folder)
        return None
    if ran.returncode != 0:
        if KILLED.search(ran.log):  # out of memory or processes: maybe not next time
            _GAVE_UP.add(folder)
        else:
            (folder / "failed").write_text(ran.log)
        return None
    gch = f"{wanted.folder / wanted.header}.gch"
    depfile = Path(f"{gch}.d")
    paths = depfile_paths(depfile.read_text(errors="surrogateescape"))
    depfile.unlink()
    reads = set()
    for path in paths:
        names = _names(path, roots)
        if not names:  # a header from a folder a project's own could not be checked against
            (folder / "failed").write_text(f"read {path}, outside the known include folders")
            return None
        reads |= names
    names = probed(paths)
    reads |= names
    # What each probe found: one answered otherwise later (a library installed) makes it again.
    candidates = {os.path.join(root, name) for name in names for root in roots}
    probes = {path: os.path.exists(path) for path in sorted(candidates)}
    files = {}
    for path in paths:
        found = os.stat(path)
        files[os.path.realpath(path)] = [found.st_size, found.st_mtime_ns]
    record = {"reads": sorted(reads), "files": files, "probes": probes}
    write_json_atomically(folder / "made", record)
    return replace(wanted, reads=frozenset(reads))


def _compile(
    wanted: Precompiled,
    text: bytes,
    flags: list[str],
    roots: list[str],
    how: _Making,
) -> NinjaRun | None:
    """Compile a fresh copy of the header in the sandbox, with `how`'s plugin if it has one
    (the copy then ends with its pragma); None if it ran out of time."""
    plugin = how.plugin
    folder = wanted.folder.parent
    shutil.rmtree(folder, ignore_errors=True)  # what a killed maker left, or a stale one
    copy = wanted.folder / wanted.header
    copy.parent.mkdir(parents=True)
    # A copy, not a link: g++ gives system headers' real paths, and would not find the .gch.
    copy.write_bytes(text + PRAGMA if plugin else text)
    gch = f"{copy}.gch"
    loads = [f"-fplugin={plugin}"] if plugin else []
    (folder / "build.ninja").write_text(
        "rule pch\n"
        f"  command = {ninja_args([how.toolchain.cxx, *loads, '-x', 'c++-header', *flags])} "
        "-MD -MF $out.d -c $in -o $out\n"
        f"build {ninja_path(gch)}: pch {ninja_path(str(copy))}\n"
    )
    # The headers, wherever they are, and the plugin.
    readable = [Path(root) for root in roots[1:]] + ([plugin.parent] if plugin else [])
    try:
        return run_ninja(
            folder,
            how.toolchain.ninja,
            how.toolchain.cxx,
            how.timeout_s,
            how.sandbox,
            tuple(readable),
            cancel=how.cancel,
            nice=how.nice,
        )
    except SampleFailed:
        return None


def _names(path: str, roots: list[str]) -> set[str]:
    """The names an include could give `path` under each of `roots` that holds it, links
    followed or not (g++ writes a system header's real path where that is shorter)."""
    names = set()
    for candidate in {os.path.normpath(path), os.path.realpath(path)}:
        for root in roots:
            for base in {os.path.normpath(root), os.path.realpath(root)}:
                if candidate.startswith(base.rstrip("/") + "/"):
                    names.add(os.path.relpath(candidate, base))
    return names


@functools.cache
def _compiler_folders(cxx: str) -> tuple[str, ...]:
    """The compiler's own include folders (libstdc++, the C library's, its built-ins): a
    project's `-I` folders come before them too."""
    output = subprocess.run(
        [cxx, "-E", "-x", "c++", "-v", os.devnull], capture_output=True, text=True, check=False
    ).stderr
    _, _, rest = output.partition("#include <...> search starts here:")
    listed, _, _ = rest.partition("End of search list.")
    return tuple(line.strip() for line in listed.splitlines() if line.strip())
