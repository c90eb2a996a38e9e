"""`pytest --upskill-sandbox-check`: run the probes in the sandbox on this machine and print
which protections hold."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from ..environ import passed_environ
from .processes import kill_tree, tree
from .sandbox import Sandbox, mechanism, python_paths, system_paths

__all__ = ["sandbox_check"]

_PROBE_S = 120.0


def _home_entries(readable: list[Path]) -> list[str]:
    """What the home folder holds beside the paths the sandbox binds: none may be read."""
    home = Path.home()
    bound = [path.absolute() for path in readable]
    return [
        str(entry)
        for entry in sorted(home.iterdir())[:50]
        if not any(path.is_relative_to(entry) or entry.is_relative_to(path) for path in bound)
    ]


def _daemons(mark: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _heard(listener: socket.socket) -> bool:
    listener.setblocking(False)
    try:
        if listener.type == socket.SOCK_DGRAM:
            listener.recvfrom(16)
        else:
            listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def sandbox_check(config: pytest.Config) -> int:
    """Print a table of the protections; 0 when every one holds."""
    from .._compat import terminal_writer  # the session's writer comes later
    from ..session.words import NO_SANDBOX, sandbox_words

    writer = terminal_writer(config, sys.stdout)
    how = mechanism()
    if how is None:
        writer.line(f"upskill sandbox check: {NO_SANDBOX}", red=True)
        return 1
    writer.line(f"upskill sandbox check: sandbox: {how}; {sandbox_words(how)}")
    scratch = Path(tempfile.mkdtemp(prefix="pytest-upskill-check-"))
    here = config.invocation_params.dir
    readable = [*system_paths(), *python_paths(imports=True), here, config.rootpath]
    environ = {**passed_environ(), "HOME": str(scratch), "TMPDIR": str(scratch)}
    mark = f"pytest-upskill-probe-{uuid.uuid4().hex}"
    entries = json.dumps(_home_entries(readable))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.create_server(("127.0.0.1", 0))
    ports = json.dumps({"udp": udp.getsockname()[1], "tcp": tcp.getsockname()[1]})
    probe = [sys.executable, "-m", "pytest_upskill.run.probe", "-", entries, str(here), mark]
    probe.append(ports)
    command = Sandbox(tuple(readable), (scratch,), environ, scratch).command(probe, how)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environ,
        cwd=scratch,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=_PROBE_S)
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        output, _ = process.communicate()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    heard = {"UDP": _heard(udp), "TCP": _heard(tcp)}
    heard["MPTCP"] = heard["TCP"]
    udp.close()
    tcp.close()
    rows = []
    for line in output.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        name, held, detail = str(row["probe"]), bool(row["held"]), str(row["detail"])
        if name in heard:  # judged by the listener: a sandbox's own loopback hears it too
            held = not heard[name]
            detail = f"{detail}; the listener outside heard {'it' if heard[name] else 'nothing'}"
        rows.append((name, held, detail))
    outliving = _daemons(mark)
    if rows and rows[-1][0] == "a daemon outliving the sandbox":
        held = not outliving
        rows[-1] = (rows[-1][0], held, "gone with the sandbox" if held else f"pids {outliving}")
    for pid in outliving:
        for member in tree(pid):
            kill_tree(member)
    width = max((len(name) for name, _, _ in rows), default=10)
    for name, held, detail in rows:
        writer.line(
            f"  {name:<{width}}  {'held' if held else 'NOT HELD':<8}  {detail}",
            red=not held,
            green=held,
        )
    holding = sum(held for _, held, _ in rows)
    if not rows:
        writer.line(f"the probes did not run: {output[-2000:]}", red=True)
    writer.line(f"upskill sandbox check: {holding} of {len(rows)} protections hold")
    return 0 if rows and holding == len(rows) else 1
