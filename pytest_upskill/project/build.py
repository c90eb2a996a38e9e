"""Build a kernel-builder project into an importable package: toolchain, ninja, cache.

As kernel-builder does, the build generates `registration.h` and `_ops.py` and gives each build
its own op namespace (`_<name>_<key>`), so several builds of one kernel load side by side.
Compilers run in the sandbox (`run.compile`), in a fresh folder written from the files this
process holds; a cached build is checked against them before it is used.

This module runs the build, one builder per key across processes (its lock); the cache's key
and contents are `build_cache`'s, the files a build generates (registration.h, _ops.py,
build.ninja) `build_files`'.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ..config import Binding
from ..errors import SampleError, SampleFailed, SampleSkipped
from ..paths import write_bytes_atomically, write_json_atomically
from ..run.compile import KILLED, LARGEST_BUILD, bytes_written, run_ninja
from ..run.sandbox import Mechanism
from ..task import Task
from .build_cache import Build, build_key, cached_build, manifest
from .build_files import (
    REGISTRATION_H,
    Recipe,
    is_cxx_source,
    ninja_file,
    package_files,
    precompile_flags,
    project_folders,
    sm_targets,
    sources,
    toolchain_includes,
)
from .faults import toolchain_fault
from .includes import first_include
from .layout import Project
from .pch import PRECOMPILED, Precompiled, forget_given_up, precompiled_header, shadowed
from .policy_toml import cxx_flags
from .toolchain import detect_cuda, detect_toolchain

__all__ = ["Build", "BuildSetup", "build_ahead", "build_project", "forget_timeouts"]

_MISSING_HEADER = re.compile(r"fatal error: (\S+): No such file")
# Headers of CUDA libraries that ATen's CUDA headers include; a minimal toolkit lacks them.
_CUDA_LIBRARY_HEADER = re.compile(
    r"(cusparse|cublas\w*|cusolver\w*|curand\w*|cufft\w*|nvrtc|cudnn|nccl|nvToolsExt)\.h"
)
# torch's own CUDA headers, which a CPU build of torch ships only in part.
_TORCH_CUDA_HEADER = re.compile(r"(c10|ATen)/cuda/")
# Builds that ran past the timeout in this session, with all the jobs they wanted: this
# process's, and those another process of the session (an xdist worker) marked `.timedout`.
_TIMED_OUT: set[Path] = set()
_SESSION = [""]  # the session's mark, shared by its xdist workers; "" outside a session


def _first_error(log: str) -> str:
    for line in log.splitlines():
        lowered = line.lower()
        # ninja's own lines name folders, whose names may hold "error" too.
        if ("error" in lowered or "fatal" in lowered) and not line.startswith(
            ("FAILED:", "ninja: ")
        ):
            return line.strip().removeprefix("src/")[:400]
    tail = [line for line in log.splitlines() if line.strip()]
    return tail[-1][:400] if tail else "the build failed without a message"


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as stream:  # never through a link, never over a file
        stream.write(text)


def _prepare(directory: Path, recipe: Recipe, precompiled: dict[str, Precompiled]) -> None:
    """Write the build's inputs from the files this process holds in memory (never copied
    from the sample's folder on disk, which generated code may have rewritten since)."""
    project = recipe.project
    for path, text in project.files.items():
        _write_new(directory / "src" / path, text)
    _write_new(directory / "gen" / "registration.h", REGISTRATION_H)
    for path, text in package_files(recipe).items():
        _write_new(directory / "pkg" / project.name / path, text)
    _write_new(directory / "build.ninja", ninja_file(recipe, precompiled))


@dataclass(frozen=True)
class BuildSetup:
    """How this process builds: where the cache is, how long a build may take, the sandbox,
    precompiled headers or not, ninja's `-j`, and an event that stops a build ahead."""

    cache_dir: Path
    timeout_s: float
    sandbox: Mechanism | None
    precompiled_headers: bool
    jobs: int | None = None
    cancel: threading.Event | None = None
    nice: int = 0  # lower priority for its compilers
    instantiate: bool = True  # precompiled headers hold their instantiations, where g++ can


def build_project(
    project: Project,
    task: Task,
    cache_dir: Path,
    timeout_s: float,
    binding: Binding = "kernel-builder",
    sandbox: Mechanism | None = None,
    precompiled_headers: bool = True,
    instantiate: bool = True,
) -> Build:
    """Build `project` for `task`'s backend, or return the cached outcome of an identical
    build; `sandbox`: the mechanism the compilers run under (None: none);
    `precompiled_headers`: compile sources that start with a torch header against its
    precompiled form (made once, under `cache_dir`), which holds the templates its headers
    instantiate if `instantiate` (where g++ can load the plugin)."""
    how = BuildSetup(cache_dir, timeout_s, sandbox, precompiled_headers, instantiate=instantiate)
    recipe, directory = _plan(project, task, binding, cache_dir)
    _fail_if_timed_out(directory, timeout_s)
    cached = cached_build(directory, recipe)
    if cached is None:
        # Before the lock: no waiter waits for these.
        precompiled = _precompiled(recipe, how, directory.name)
        # One builder per key across processes (xdist workers, parallel sessions, builds
        # ahead); the others wait, but never forever: a builder is killed at `timeout_s`, so a
        # wait of twice that means a stuck process holds the lock.
        lock = _lock(recipe, cache_dir)
        try:
            with lock.acquire(timeout=2 * timeout_s):
                cached = cached_build(directory, recipe)
                if cached is None:
                    _fail_if_timed_out(directory, timeout_s)  # by the builder just waited for
                    build = _build(directory, recipe, how, precompiled)
                    return _check_toolchain(build, recipe)
        except Timeout:
            raise SampleError(
                "build",
                f"waited {2 * timeout_s:g} s for another process building the same kernel "
                f"(lock {lock.lock_file}); is a stopped pytest still holding it?",
            ) from None
    return _check_toolchain(cached, recipe)


def build_ahead(
    project: Project,
    task: Task,
    binding: Binding,
    how: BuildSetup,
) -> None:
    """Build `project` unless it is cached or another process is building it: the test that
    needs it then finds it in the cache, or waits for its lock. Stops when `how.cancel` is
    set (SampleError)."""
    recipe, directory = _plan(project, task, binding, how.cache_dir)
    if _timed_out(directory) or cached_build(directory, recipe) is not None:
        return
    precompiled = _precompiled(recipe, how, directory.name)
    lock = _lock(recipe, how.cache_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return  # being built: by a test, or by another process's build ahead
    try:
        if cached_build(directory, recipe) is None and not _timed_out(directory):
            _build(directory, recipe, how, precompiled)
    finally:
        lock.release()


def _plan(project: Project, task: Task, binding: Binding, cache_dir: Path) -> tuple[Recipe, Path]:
    """The recipe of `project`'s build and the folder the cache keeps it in."""
    for framework in ("tvm_ffi", "torch_noarch"):
        if getattr(project.config, framework) is not None:
            raise SampleFailed(
                "build",
                f"build.toml has a [{framework.replace('_', '-')}] section: pytest-upskill "
                "builds [torch] extensions",
            )
    if not project.kernels_for(task.backend):
        raise SampleFailed(
            "build", f'build.toml has no [kernel.*] table with backend = "{task.backend}"'
        )
    toolchain = detect_toolchain()
    cuda = detect_cuda() if task.backend == "cuda" else None
    key = build_key(project, task, binding, toolchain, cuda.fingerprint if cuda else "")
    return Recipe(project, task, binding, toolchain, cuda, key), cache_dir / f"{project.name}-{key}"


def _lock(recipe: Recipe, cache_dir: Path) -> FileLock:
    cache_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(cache_dir / f"{recipe.project.name}-{recipe.key}.lock"))


def forget_timeouts(session: str) -> None:
    """A new session builds again what timed out in an earlier one in this process; `session`
    marks this one (its xdist workers pass the same), so builds that time out in one of its
    processes are not started again in the others."""
    _TIMED_OUT.clear()
    _SESSION[0] = session
    forget_given_up()


def _timed_out(directory: Path) -> bool:
    if directory in _TIMED_OUT:
        return True
    if not _SESSION[0]:  # outside a session no other process shares its timeouts: no read
        return False
    try:
        return Path(f"{directory}.timedout").read_text() == _SESSION[0]
    except (OSError, UnicodeDecodeError):
        return False


def _fail_if_timed_out(directory: Path, timeout_s: float) -> None:
    if _timed_out(directory):
        raise SampleFailed(
            "build",
            f"the build took longer than {timeout_s:g} s and was stopped (earlier in this session)",
        )


def _precompiled(recipe: Recipe, how: BuildSetup, build: str) -> dict[str, Precompiled]:
    """The precompiled header each C++ source of `build` is compiled against: those whose
    first directive includes one of torch's umbrella headers, have no flags of their own in
    build.toml, and whose project holds no header that would stand in for one the precompiled
    header read. Where a header cannot serve (wanted by no other build yet, being made
    elsewhere, a full disk), sources compile without."""
    if not how.precompiled_headers:
        return {}
    files, own_flags = recipe.project.files, cxx_flags(recipe.project, recipe.task.backend)
    flags, systems = precompile_flags(recipe), toolchain_includes(recipe)
    folders = project_folders(recipe)
    found: dict[str, Precompiled] = {}
    headers: dict[str, Precompiled | None] = {}  # each header looked up once, for all sources
    for source in sources(recipe):
        first = first_include(files.get(source, "")) if is_cxx_source(source) else None
        if first is None or first[0] not in PRECOMPILED or source in own_flags:
            continue
        header, quoted = first
        if header not in headers:
            try:
                headers[header] = precompiled_header(
                    header,
                    flags,
                    systems,
                    recipe.toolchain,
                    how.cache_dir / "pch",
                    how.timeout_s,
                    how.sandbox,
                    how.cancel,
                    nice=how.nice,
                    wanted_by=build,
                    instantiate=how.instantiate,
                )
            except (OSError, ValueError):
                headers[header] = None
        pch = headers[header]
        if pch is not None and not shadowed(pch, source, quoted, files, folders):
            found[source] = pch
    return found


def _build(
    directory: Path, recipe: Recipe, how: BuildSetup, precompiled: dict[str, Precompiled]
) -> Build:
    """Build in a fresh folder that only this build's sandbox may write, then move it into the
    cache once the sandbox has exited: nothing else writes a cached build. A build whose
    compiler was killed (out of memory, out of processes) is not cached: it may pass later."""
    start = time.perf_counter()
    workspace = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}-"))
    try:
        _prepare(workspace, recipe, precompiled)
        toolchain = recipe.toolchain
        folders = tuple(dict.fromkeys(pch.folder for pch in precompiled.values()))
        try:
            ran = run_ninja(
                workspace,
                toolchain.ninja,
                toolchain.cxx,
                how.timeout_s,
                how.sandbox,
                folders,
                how.jobs,
                how.cancel,
                how.nice,
            )
        except SampleFailed:
            if how.jobs is None:  # it had the whole machine: no better next time this session
                _TIMED_OUT.add(directory)
                if _SESSION[0]:
                    with contextlib.suppress(OSError):
                        write_bytes_atomically(Path(f"{directory}.timedout"), _SESSION[0].encode())
            raise
        log = ran.log
        reason = "" if ran.returncode == 0 else _first_error(log)
        written = bytes_written(workspace)
        if written > LARGEST_BUILD:
            reason = (
                f"the build wrote {written / (1 << 30):.1f} GiB, over the limit of "
                f"{LARGEST_BUILD >> 30} GiB"
            )
        if reason:  # nothing of a failed build is loaded: its objects need no disk
            shutil.rmtree(workspace / "obj", ignore_errors=True)
            shutil.rmtree(workspace / "pkg", ignore_errors=True)
        build = Build(
            ok=not reason,
            key=recipe.key,
            directory=str(directory),
            ext_name=recipe.ext,
            reason=reason,
            log=log,
            seconds=round(time.perf_counter() - start, 3),
            targets=sm_targets(recipe.capabilities) if recipe.cuda else (),
            compile_only=recipe.compile_only,
            cpu_s=round(ran.cpu_s, 3),
            made_at=time.time(),
        )
        (workspace / "build.log").write_text(log)
        if reason and KILLED.search(log):
            return build
        # Written last and atomically: its presence means the build finished.
        document = {**asdict(build), "manifest": manifest(workspace)}
        write_json_atomically(workspace / "result.json", document)
        if directory.exists():  # a build found broken or tampered with: built again
            shutil.rmtree(directory)
        os.rename(workspace, directory)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return build


def _check_toolchain(build: Build, recipe: Recipe) -> Build:
    """A build that failed for want of a header this machine lacks is not the model's fault:
    a CUDA library's or torch's CUDA header skips, and a header that a file of the toolchain
    itself includes is the harness's error."""
    missing = _MISSING_HEADER.search(build.reason)
    if build.ok or not missing:
        return build
    header, torch_cuda = missing.group(1), recipe.toolchain.torch_cuda
    if _CUDA_LIBRARY_HEADER.fullmatch(header) or (
        torch_cuda is None and _TORCH_CUDA_HEADER.match(header)
    ):
        why = "this torch is a CPU build" if torch_cuda is None else "a minimal toolkit"
        raise SampleSkipped(
            "build",
            f"{header} is missing here ({why}): install a CUDA build of torch, "
            "which brings torch's CUDA headers and the CUDA library headers",
        )
    fault = toolchain_fault(build.log, recipe)
    if fault is not None:
        raise SampleError("build", fault)
    return build
