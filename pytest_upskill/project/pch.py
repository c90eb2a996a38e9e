"""Precompiled torch headers: the header cost every project pays, paid once per toolchain.

A C++ source whose first directive includes one of torch's umbrella headers (`<torch/all.h>`,
`<torch/library.h>`, ...) is compiled against that header's precompiled form, made once per
toolchain, flags and header text in `pch/` beside the builds, by the build's own sandbox.

What gets compiled does not change: the precompiled header is g++'s own (`.gch`, which g++
uses only where its flags and the macros it saw match); its folder holds a copy of the header
and comes first among the system folders, after the project's own; a source with flags of its
own in build.toml, or a project that holds a header with the name of any header the
precompiled one read, compiles as before. (A `__has_include` probe of a header that the project
adds is the one thing the `.gch` cannot see; torch's umbrella headers probe none.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import SampleError, SampleFailed
from ..run.compile import run_ninja
from ..run.sandbox import Mechanism
from .escape import ninja_args, ninja_path
from .toolchain import Toolchain

__all__ = ["PRECOMPILED", "Precompiled", "first_include", "precompiled_header", "shadowed"]

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
_INCLUDE = re.compile(r'#[ \t]*include[ \t]*(<[^<>"\n]+>|"[^<>"\n]+")[ \t]*(?://[^\n]*)?(?:\n|$)')
_BLANK = " \t\r\n\f\v"
_OUT_OF_TIME: set[Path] = set()  # headers this process gave up on: made past the build's timeout


def first_include(text: str) -> tuple[str, bool] | None:
    """The header a source's first directive includes and whether it is quoted, when nothing
    but blank space and comments comes before it; else None. One pass over the text."""
    at, end = 0, len(text)
    while at < end:
        if text[at] in _BLANK:
            at += 1
        elif text.startswith("//", at):
            newline = text.find("\n", at)
            if newline < 0 or text[newline - 1] == "\\":  # a comment continued: give up
                return None
            at = newline + 1
        elif text.startswith("/*", at):
            close = text.find("*/", at + 2)
            if close < 0:
                return None
            at = close + 2
        else:
            break
    match = _INCLUDE.match(text, at)
    if match is None:
        return None
    name = match.group(1)
    return name[1:-1], name[0] == '"'


@dataclass(frozen=True)
class Precompiled:
    """A made precompiled header: the folder to put first among the system folders (it holds
    the header's copy and its `.gch`), and every header it read, as included (`c10/...`)."""

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


def _key(header: str, text: str, flags: list[str], toolchain: Toolchain) -> str:
    digest = hashlib.sha256()
    for part in (toolchain.fingerprint, toolchain.cxx, header, text, *flags):
        digest.update(part.encode() + b"\0")
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
) -> Precompiled | None:
    """`header` precompiled with `flags` (the sources' flags less the project's own folders
    and the define that names the build), made under `root` unless a process made it before;
    None where the header is not in the system folders or g++ could not precompile it.
    `cancel` stops a wait for another maker, and the making (SampleError)."""
    origin = next((d for d in system_includes if (Path(d) / header).is_file()), None)
    if origin is None:
        return None
    text = (Path(origin) / header).read_text(encoding="utf-8", errors="surrogateescape")
    folder = root / _key(header, text, flags, toolchain)
    wanted = Precompiled(folder, header, origin, frozenset())
    made = _made(wanted)
    if made is not None or (folder / "failed").exists() or folder in _OUT_OF_TIME:
        return made
    root.mkdir(parents=True, exist_ok=True)
    # One maker per header across processes; the others wait for it, as long as it may take.
    lock = FileLock(f"{folder}.lock")
    deadline = time.monotonic() + 2 * timeout_s
    while True:  # a short wait at a time, so that a build ahead can be cancelled
        try:
            lock.acquire(timeout=0.25)
            break
        except Timeout:
            if cancel is not None and cancel.is_set():
                raise SampleError(
                    "build", "the build was cancelled: the session is ending"
                ) from None
            if time.monotonic() > deadline:
                return None  # compiled without it: slower, never wrong
    try:
        made = _made(wanted)
        if made is None and not (folder / "failed").exists():
            # Its folder first, as the sources have it: the header may include itself.
            flags = ["-isystem", str(folder), *flags, wanted.prefix_map]
            made = _make(
                wanted, text, flags, system_includes, toolchain, timeout_s, sandbox, cancel
            )
    finally:
        lock.release()
    return made


def _made(wanted: Precompiled) -> Precompiled | None:
    """`wanted`, with the headers it read, if it was made."""
    try:
        reads = json.loads((wanted.folder / "made").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(reads, list) or not all(isinstance(name, str) for name in reads):
        return None
    return replace(wanted, reads=frozenset(reads))


def _make(
    wanted: Precompiled,
    text: str,
    flags: list[str],
    system_includes: list[str],
    toolchain: Toolchain,
    timeout_s: float,
    sandbox: Mechanism | None,
    cancel: threading.Event | None,
) -> Precompiled | None:
    """Compile the header's copy in its folder, in the sandbox; `made` (the headers it read)
    or `failed` (why not) is written last."""
    folder = wanted.folder
    shutil.rmtree(folder, ignore_errors=True)  # what a killed maker left
    copy = folder / wanted.header
    copy.parent.mkdir(parents=True)
    # A copy, not a link: g++ gives system headers' real paths, and would not find the .gch.
    copy.write_text(text, encoding="utf-8", errors="surrogateescape")
    gch = f"{copy}.gch"
    (folder / "build.ninja").write_text(
        "rule pch\n"
        f"  command = {ninja_args([toolchain.cxx, '-x', 'c++-header', *flags])} "
        "-MD -MF $out.d -c $in -o $out\n"
        f"build {ninja_path(gch)}: pch {ninja_path(str(copy))}\n"
    )
    try:
        ran = run_ninja(folder, toolchain.ninja, toolchain.cxx, timeout_s, sandbox, cancel=cancel)
    except SampleFailed:  # out of time: not again in this process, but maybe in another
        shutil.rmtree(folder, ignore_errors=True)
        _OUT_OF_TIME.add(folder)
        return None
    if ran.returncode != 0:
        (folder / "failed").write_text(ran.log)
        return None
    reads = _reads(Path(f"{gch}.d"), [str(folder), *system_includes])
    (folder / "made").write_text(json.dumps(sorted(reads)))
    return replace(wanted, reads=frozenset(reads))


def _reads(depfile: Path, roots: list[str]) -> set[str]:
    """Every header the `.gch` read, by the name an include would give it under each of the
    folders that holds it."""
    paths = depfile.read_text().replace("\\\n", " ").partition(": ")[2].split()
    return {
        os.path.relpath(path, root)
        for path in paths
        for root in roots
        if path.startswith(root.rstrip("/") + "/")
    }
