"""Where the plugin's files go; light enough for the plugin module to import at start-up."""

from __future__ import annotations

import getpass
import json
import os
import tempfile
from pathlib import Path

import pytest

__all__ = [
    "configured_path",
    "default_build_dir",
    "lock_dir",
    "write_json_atomically",
]


def default_build_dir() -> Path:
    """Builds are shared by every project of the user, like torch's own extension cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pytest-upskill" / "builds"


def configured_path(config: pytest.Config, option: str, ini: str) -> Path | None:
    """An option's path, relative to where pytest started; else its ini twin's, relative to the
    ini file."""
    cli: str | None = getattr(config.option, option)
    if cli:
        return config.invocation_params.dir / cli
    value = str(config.getini(ini))
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    return ini_dir / value if value else None


def write_json_atomically(path: Path, document: object) -> None:
    """Write `document` as indented JSON; a reader sees the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def lock_dir() -> Path:
    """This user's folder for lock files, on this machine: never beside files users commit, and
    never a folder another user made (its locks would be theirs to open)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    folder = Path(tempfile.gettempdir()) / f"pytest-upskill-{user}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder
