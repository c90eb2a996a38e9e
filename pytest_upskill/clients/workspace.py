"""An agent CLI's workspace: seeded with the task and (for a skill condition) the skill where
its client looks for skills; harvested, when the CLI ends, into the project files of the reply.

The harvest reads what a sandboxed program wrote, so it trusts nothing there: links, devices and
pipes are left out, a file is opened without following links, and the project's limits (files,
sizes, paths) are those of a reply.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..errors import SampleFailed
from ..project.extract import MAX_FILE_BYTES, MAX_FILES, MAX_REPLY_BYTES, check_path
from ..skill import Skill

__all__ = ["TASK_FILE", "harvest", "install_skill"]

TASK_FILE = "TASK.md"  # the task as the CLI was given it: seeded, never harvested
# Folders that hold no project file: the clients' own, version control, build outputs.
_SKIPPED_DIRS = frozenset({"__pycache__", "build", "node_modules", "dist"})
_SKIPPED_SUFFIXES = (".so", ".o", ".pyc", ".a", ".obj", ".ninja_deps", ".ninja_log")


def install_skill(skill: Skill, skills_dir: Path) -> Path:
    """Copy `skill` to `skills_dir/NAME`, regular files only, as a client's user installs it."""
    target = skills_dir / skill.name
    for path in skill.files():
        destination = target / path.relative_to(skill.path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return target


def harvest(workspace: Path) -> tuple[dict[str, str], list[str]]:
    """The project files the CLI left in `workspace`, and what was left out, in words. Hidden
    folders and files (the clients' own), build outputs and the seeded task are not part of it,
    nor what is past a reply's limits (files, bytes): the project is what fits."""
    files: dict[str, str] = {}
    notes: list[str] = []
    total = 0
    for relative in _walk(workspace, ""):
        if relative == TASK_FILE or relative.endswith(_SKIPPED_SUFFIXES):
            continue
        try:
            path = check_path(relative)
        except SampleFailed:
            notes.append(f"left out {relative[:200]!r}: not a plain relative path")
            continue
        data = _read_regular(workspace / relative)
        if data is None:
            notes.append(f"left out {relative[:200]!r}: not a regular file")
            continue
        if len(data) > MAX_FILE_BYTES:
            notes.append(f"left out {relative[:200]!r}: larger than {MAX_FILE_BYTES} bytes")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            notes.append(f"left out {relative[:200]!r}: not UTF-8 text")
            continue
        if len(files) >= MAX_FILES or total + len(data) > MAX_REPLY_BYTES:
            notes.append(
                f"left out {relative[:200]!r} and what follows: a reply holds at most "
                f"{MAX_FILES} files, {MAX_REPLY_BYTES} bytes"
            )
            break
        files[path] = text
        total += len(data)
    return files, notes


def _walk(root: Path, prefix: str, depth: int = 0) -> list[str]:
    """Relative paths of the entries under `root` that may be project files; folders are
    entered without following links, 16 levels down at most."""
    found: list[str] = []
    if depth > 16:
        return found
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith("."):
            continue
        relative = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in _SKIPPED_DIRS:
                found += _walk(Path(entry.path), relative + "/", depth + 1)
        else:
            found.append(relative)
        if len(found) > 4 * MAX_FILES:  # a workspace of a million files: enough read
            break
    return found


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file at `path`, never through a link; None for anything else."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        return stream.read(MAX_FILE_BYTES + 1)
