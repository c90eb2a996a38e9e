"""A session's scratch folder in TMPDIR, and those that sessions killed outright left there.

Each scratch folder holds a lock file that its process keeps locked for as long as it lives; the
kernel drops the lock when the process ends, however it ends (SIGKILL, the out-of-memory
killer), so a folder whose lock another process can take belongs to no live session. The next
session removes it: an agent's workspace or the builds ahead of a killed session are not left
in TMPDIR for good."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path

__all__ = ["PREFIX", "Scratch", "remove_abandoned"]

PREFIX = "pytest-upskill-"
_LOCK = "session.lock"


class Scratch:
    """A new scratch folder (mode 0700), locked until `remove()` or the process's end."""

    def __init__(self, parent: Path | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        # Locked under another name, then renamed: a lock file is never seen unlocked.
        making = self.path / f".{_LOCK}"
        self._lock: int | None = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(making, self.path / _LOCK)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def remove_abandoned(parent: Path | None = None) -> list[Path]:
    """Remove the scratch folders in `parent` (TMPDIR) that no live process holds; only this
    user's own folders that hold a lock file count, and links are never followed."""
    root = Path(tempfile.gettempdir() if parent is None else parent)
    removed = []
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(PREFIX) and _abandoned(Path(entry.path)):
                removed.append(Path(entry.path))
    return removed


def _abandoned(folder: Path) -> bool:
    """Whether `folder` is a scratch folder of a process that has ended; if so it is removed,
    under its lock (a second session that looks at once finds the lock taken)."""
    try:
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        # Not blocking: a FIFO in its place does not hold the session up.
        lock = os.open(folder / _LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # not a folder of ours, no lock file (an older version's, or being made)
        return False
    try:
        if not stat.S_ISREG(os.fstat(lock).st_mode):
            raise OSError("not a lock file")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # its session lives
        os.close(lock)
        return False
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(lock)
    return True
