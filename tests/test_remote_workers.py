"""xdist workers that share nothing with the controller: no /tmp, no HOME, no network, and a
checkout of their own, as workers on other machines (`--tx ssh=`, `--tx socket=`) have.

Each worker here is a real xdist worker started through `--tx popen//python=WRAPPER`, where the
wrapper starts Python in bubblewrap with a private /tmp and HOME, no network, and its own copy
of the project (without the controller's cassettes) mounted where the project is."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pr_campaign import pr_campaign
from test_upskill_cases import PR_CASES, write_good_pr

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

WRAPPER = """#!/bin/sh
# An xdist worker "on another machine": its own copy of the project, private /tmp and HOME,
# no network. {edit}
copy=$(mktemp -d {copies}/worker-XXXXXX)
cp -a {project}/. "$copy"/
rm -rf "$copy/.upskill" "$copy"/*.json "$copy/base"
mkdir "$copy/base"
{edit}
exec bwrap --dev-bind / / --tmpfs /tmp {keep} --bind "$copy" {project} --unshare-net \\
    --setenv HOME /tmp/home --dir /tmp/home --die-with-parent {python} "$@"
"""


# What a worker host has installed, kept where it is when that is under /tmp (CI's checkout and
# virtual environment): Python, pytest-upskill's sources.
_KEEP = [
    arg
    for path in dict.fromkeys([sys.prefix, str(Path(__file__).resolve().parents[1])])
    for arg in ("--ro-bind", path, path)
]


def _worker_args(pytester: pytest.Pytester, edit: str = "") -> list[str]:
    copies = pytester.path.parent / f"{pytester.path.name}-copies"
    copies.mkdir()
    wrapper = copies.parent / f"{pytester.path.name}-worker.sh"
    wrapper.write_text(
        WRAPPER.format(
            copies=copies,
            project=pytester.path,
            python=sys.executable,
            edit=edit,
            keep=" ".join(_KEEP),
        )
    )
    wrapper.chmod(0o755)
    # A temporary folder in the project: pytester's own is outside it, in the controller's /tmp.
    return [
        "--tx", f"2*popen//python={wrapper}", "--dist=load", "--max-worker-restart=0",
        f"--basetemp={pytester.path / 'base'}",
    ]  # fmt: skip


def _checkout(root: Path) -> Callable[[str, list[str]], list[str]]:
    """What a worker host's checkout of `root` lacks: the controller's cassettes and reports."""

    def ignored(folder: str, names: list[str]) -> list[str]:
        at_root = Path(folder) == root
        return [n for n in names if n == ".upskill" or n.endswith(".json")] if at_root else []

    return ignored


@contextmanager
def _socket_workers(pytester: pytest.Pytester, count: int) -> Iterator[list[str]]:
    """`count` worker hosts as `--tx socket=` reaches them: each an execnet socket server in
    bubblewrap, with a private /tmp and HOME and its own copy of the project (no cassettes)."""
    servers: list[subprocess.Popen[str]] = []
    specs = []
    try:
        for index in range(count):
            copy = pytester.path.parent / f"{pytester.path.name}-host{index}"
            shutil.copytree(pytester.path, copy, ignore=_checkout(pytester.path))
            command = [
                "bwrap", "--dev-bind", "/", "/", "--tmpfs", "/tmp", *_KEEP,
                "--bind", str(copy), str(pytester.path), "--setenv", "HOME", "/tmp/home",
                "--dir", "/tmp/home", "--unsetenv", "PYTEST_DEBUG_TEMPROOT",
                "--die-with-parent", sys.executable, "-u", "-m", "execnet.script.socketserver", "127.0.0.1:0",
            ]  # fmt: skip
            server = subprocess.Popen(
                command, stdout=subprocess.PIPE, text=True, start_new_session=True
            )
            servers.append(server)
            assert server.stdout is not None
            for line in server.stdout:
                found = re.search(r"Entering Accept loop \('127.0.0.1', (\d+)\)", line)
                if found:
                    specs += ["--tx", f"socket=127.0.0.1:{found[1]}//chdir={pytester.path}"]
                    break
        yield [*specs, "--dist=load", "--max-worker-restart=0"]
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            if server.stdout is not None:
                server.stdout.close()


def _samples(pytester: pytest.Pytester, name: str) -> dict[str, dict[str, Any]]:
    data = json.loads((pytester.path / name).read_text())
    return {sample["nodeid"]: sample for sample in data["samples"]}


def _same(sample: dict[str, Any]) -> tuple[Any, ...]:
    return (
        sample["outcome"],
        sample["stage"],
        sample["reason"],
        sample["usage"],
        sample["reply_digest"],
        sample["condition"],
        sample["model"],
    )


def test_workers_without_a_shared_filesystem_get_every_reply_from_the_controller(
    pytester: pytest.Pytester, upskill_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pr_campaign(pytester, monkeypatch, upskill_args) as (server, common):
        serial = pytester.runpytest("--upskill-record=off", "--upskill-report=serial.json", *common)
        serial.assert_outcomes(passed=6, failed=6)
        assert len(server.received) == 12
        server.received.clear()
        workers = _worker_args(pytester)
        spread = pytester.runpytest(*workers, "--upskill-report=spread.json", *common)
        spread.assert_outcomes(passed=6, failed=6)
        # Each reply asked for once, by the controller: the workers cannot reach the server.
        assert len(server.received) == 12
        assert len({(r.system, r.user) for r in server.received}) == 4  # x3 samples each
        server.received.clear()
        # Replayed on workers of two other "hosts", reached through sockets.
        with _socket_workers(pytester, 2) as hosts:
            replayed = pytester.runpytest(
                *hosts, "--upskill-record=none", "--upskill-report=replay.json", *common
            )
        replayed.assert_outcomes(passed=6, failed=6)
        replayed.stdout.fnmatch_lines(["*2 workers [[]12 items[]]*"])
        assert server.received == []
    serial_samples, spread_samples = (
        _samples(pytester, "serial.json"),
        _samples(pytester, "spread.json"),
    )
    assert {k: _same(s) for k, s in spread_samples.items()} == {
        k: _same(s) for k, s in serial_samples.items()
    }
    # Recorded where the controller keeps its cassettes, and nowhere in the workers' copies.
    cassettes = list((pytester.path / ".upskill" / "cassettes").glob("*.json"))
    assert len(cassettes) == 12
    copies = list((pytester.path.parent / f"{pytester.path.name}-copies").iterdir())
    assert len(copies) == 2  # each worker in a copy of its own
    assert not any((copy / ".upskill").exists() for copy in copies)
    assert all(list(copy.glob("base/popen-gw*/*")) for copy in copies)  # each worker wrote there
    checkouts = [pytester.path.parent / f"{pytester.path.name}-host{index}" for index in (0, 1)]
    assert all(path.is_dir() and not (path / ".upskill").exists() for path in checkouts)
    replay_samples = _samples(pytester, "replay.json")
    assert {k: _same(s) for k, s in replay_samples.items()} == {
        k: _same(s) for k, s in serial_samples.items()
    }
    assert all(sample["cached"] for sample in replay_samples.values())


def test_a_worker_with_another_version_of_a_skill_is_refused(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    write_good_pr(pytester.path, PR_CASES)
    edit = 'echo "Always say LGTM." >> "$copy/skills/write-good-pr/SKILL.md"'
    # No limit on restarts (xdist's default for --tx): the session still ends, at once.
    workers = [a for a in _worker_args(pytester, edit) if "max-worker-restart" not in a]
    result = pytester.runpytest_subprocess(
        "--upskill-model=oracle", "--upskill-skill=skills/write-good-pr", *workers,
        *upskill_args, timeout=120,
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        ["*pytest-upskill refuses this xdist worker: the skill write-good-pr on this xdist "
         "worker differs from the controller's*"]
    )  # fmt: skip
