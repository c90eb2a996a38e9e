"""The build cache: a build's key, what it holds (its manifest) and whether a cached build is
still what its recipe builds."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..config import Binding
from ..task import Task
from .build_files import Recipe, package_files
from .layout import Project
from .toolchain import Toolchain

__all__ = ["Build", "build_key", "cached_build", "manifest"]


@dataclass(frozen=True)
class Build:
    """The outcome of building one project, as stored in the cache."""

    ok: bool
    key: str
    directory: str
    ext_name: str
    reason: str
    log: str
    seconds: float
    targets: tuple[str, ...] = ()
    compile_only: bool = False
    cached: bool = False
    cpu_s: float = 0.0  # the compilers' CPU seconds
    made_at: float = 0.0  # when it was built (seconds since the epoch)

    @property
    def package_dir(self) -> Path:
        return Path(self.directory) / "pkg"


def build_key(
    project: Project, task: Task, binding: Binding, toolchain: Toolchain, cuda: str
) -> str:
    digest = hashlib.sha256()
    parts = (toolchain.fingerprint, cuda, task.backend, task.capability, project.name, binding)
    for part in parts:
        digest.update(part.encode() + b"\0")
    for path in sorted(project.files):
        digest.update(path.encode() + b"\0" + project.files[path].encode() + b"\0")
    return digest.hexdigest()[:16]


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:  # a library of any size, in pieces
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(directory: Path) -> dict[str, str]:
    """The digest of every file a test loads from a build: its package, the library included."""
    package = directory / "pkg"
    return {
        str(path.relative_to(package)): _digest(path)
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _intact(directory: Path, recipe: Recipe, expected: dict[str, str]) -> bool:
    """Whether a cached build is what this recipe builds: its sources are the project's files,
    its Python files are the package's, and no file it loads changed since it was built."""
    try:
        for path, text in recipe.project.files.items():
            if (directory / "src" / path).read_text(encoding="utf-8") != text:
                return False
        package = directory / "pkg" / recipe.project.name
        for path, text in package_files(recipe).items():
            if (package / path).read_text(encoding="utf-8") != text:
                return False
        return manifest(directory) == expected
    except (OSError, UnicodeDecodeError):
        return False


def cached_build(directory: Path, recipe: Recipe) -> Build | None:
    """The cached build in `directory` if there is one and it is intact, else None (a build
    that does not match what it was built from is removed, and built again)."""
    result_file = directory / "result.json"
    if not result_file.is_file():  # written last and atomically: no lock needed to read it
        return None
    try:
        document = json.loads(result_file.read_text())
        expected = document.pop("manifest")
        build = Build(**{**document, "cached": True, "directory": str(directory)})
    except (OSError, ValueError, TypeError, KeyError):
        build, expected = None, {}
    if build is not None and (not build.ok or _intact(directory, recipe, expected)):
        return build
    return None
