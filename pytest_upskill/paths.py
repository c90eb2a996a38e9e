"""Where the plugin's files go; light enough for the plugin module to import at start-up."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import tempfile
from pathlib import Path

import pytest

__all__ = [
    "bind_unix",
    "configured_path",
    "default_build_dir",
    "lock_dir",
    "write_bytes_atomically",
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
    """Write `document` as indented JSON; a reader sees the whole file or none of it. The file
    gets the permissions any new file gets under the umask: reports and cassettes are shared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_beside(path)
    try:
        # A model's text may hold a lone surrogate (a JSON escape): written as "?", not a crash.
        with os.fdopen(handle, "w", encoding="utf-8", errors="replace") as stream:
            json.dump(document, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write `data` as `write_json_atomically` writes a document: whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_beside(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new, hidden file beside `path`, open for writing. Not `tempfile.mkstemp`, which makes
    it 0600 whatever the umask; reading the umask means setting it, which races other threads."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")  # pragma: no cover


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


def bind_unix(unix: socket.socket, path: Path) -> None:
    """Bind `unix` to `path`, however deep: a socket's path holds at most 107 bytes (a deep
    TMPDIR is longer), so it is named through its folder's descriptor."""
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        unix.bind(f"/proc/self/fd/{folder}/{path.name}")
    finally:
        os.close(folder)
