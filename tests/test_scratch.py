"""Scratch folders: what a session killed outright leaves in TMPDIR goes with the next session,
and nothing else does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_upskill.session.scratch import Scratch, remove_abandoned

WAITING_TEST = """
import os, pathlib, time

def test_wait():
    pathlib.Path(os.environ["READY"]).touch()
    time.sleep(600)
"""


def _scratch_folders(tmp: Path) -> set[Path]:
    return {path.parent for path in tmp.glob("pytest-upskill-*/session.lock")}


def _held_by(pid: int) -> set[Path]:
    """The scratch folders whose lock process `pid` holds open."""
    links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return {Path(link).parent for link in links if link.endswith("/session.lock")}


def _waiting_session(pytester: pytest.Pytester, tmp: Path, ready: Path, args: list[str]) -> Any:
    environ = {**os.environ, "TMPDIR": str(tmp), "READY": str(ready)}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "--upskill-model=oracle", *args, "test_wait.py"],
        cwd=pytester.path,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_session_killed_outright_leaves_its_scratch_folder_to_the_next_one(
    pytester: pytest.Pytester, upskill_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    pytester.makepyfile(test_wait=WAITING_TEST, test_quick="def test_quick():\n    pass\n")
    killed = _waiting_session(pytester, tmp, pytester.path / "killed-ready", upskill_args)
    living = _waiting_session(pytester, tmp, pytester.path / "living-ready", upskill_args)
    try:
        deadline = time.monotonic() + 120
        while not all((pytester.path / f"{name}-ready").exists() for name in ("killed", "living")):
            assert time.monotonic() < deadline, "the sessions never started their tests"
            time.sleep(0.1)
        both = _scratch_folders(tmp)
        (gone,) = _held_by(killed.pid)
        (kept,) = _held_by(living.pid)
        assert both == {gone, kept}
        (payload := gone / "agents" / "workspace").mkdir(parents=True)
        (payload / "kernel.cu").write_text("// a killed agent's work\n")
        killed.kill()
        killed.wait()
        assert _scratch_folders(tmp) == both  # a killed process cannot clean up after itself

        monkeypatch.setenv("TMPDIR", str(tmp))
        result = pytester.runpytest_subprocess(
            "--upskill-model=oracle", *upskill_args, "test_quick.py"
        )
        result.assert_outcomes(passed=1)
        # The killed session's folder went; the living one's stays, as the new session's own
        # went at its end.
        assert _scratch_folders(tmp) == {kept}
        assert not gone.exists()
        assert living.poll() is None
    finally:
        for process in (killed, living):
            process.kill()
            process.wait()


def test_only_this_users_unlocked_scratch_folders_go(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    def scratch_folder(name: str, *, locked: bool = False) -> Path:
        folder = tmp / name
        (folder / "agents").mkdir(parents=True)
        (folder / "agents" / "work.txt").write_text("work")
        (folder / "session.lock").touch()
        return folder

    abandoned = scratch_folder("pytest-upskill-abandoned")
    living = Scratch(tmp)  # a lock held through another open file, as another process holds it
    unlocked = scratch_folder("pytest-upskill-old")
    (unlocked / "session.lock").unlink()  # an older version's: no lock file, not judged
    other_name = scratch_folder("other-abandoned")
    outside = scratch_folder("../outside")
    (tmp / "pytest-upskill-link").symlink_to(outside)
    piped = scratch_folder("pytest-upskill-fifo")
    (piped / "session.lock").unlink()
    os.mkfifo(piped / "session.lock")
    (tmp / "pytest-upskill-file").write_text("a file")
    kept = [unlocked, other_name, outside, piped]
    if os.getuid() == 0:  # another user's folder (only root can make one here)
        kept.append(theirs := scratch_folder("pytest-upskill-theirs"))
        os.chown(theirs, 65534, 65534)

    try:
        assert remove_abandoned(tmp) == [abandoned]
        assert remove_abandoned(tmp) == []
    finally:
        living.remove()
    assert not abandoned.exists()
    for folder in kept:
        assert (folder / "agents" / "work.txt").read_text() == "work"
    assert (outside / "session.lock").is_file()
    assert (tmp / "pytest-upskill-file").read_text() == "a file"
    assert not living.path.exists()
