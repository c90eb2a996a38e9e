"""One agent CLI run: its workspace seeded, the CLI started in its sandbox behind the model
proxy, stopped at its time limit, and its workspace harvested.

The sandbox is bubblewrap's with a network namespace of its own: the CLI writes only its
workspace, its own home and a private /tmp, reads the system, this Python (to build) and its
own installation, and reaches nothing but the proxy. Nothing of the user's is inside: not the
user's home, not the test files, not a key.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from io import BufferedReader
from pathlib import Path
from typing import cast

from ..environ import passed_environ
from ..errors import SampleError
from ..generate.providers import Usage
from ..run.compile import bytes_written
from ..run.processes import kill_tree, tree_memory_gib
from ..run.sandbox import Limits, Sandbox, python_paths, system_paths
from ..skill import Skill
from .exchanges import Exchange
from .protocol import HOME, WORKSPACE, Client, Summary, json_events
from .proxy import Proxy
from .workspace import TASK_FILE, harvest, install_skill

__all__ = ["AgentRun", "Ran"]

_SOCKETS = Path("/run/upskill")
_PORT = 8080  # the bridge's, on the sandbox's own loopback
_TRANSCRIPT_CAP = 32 << 20  # bytes of the CLI's JSON events kept
_STDERR_CAP = 1 << 20


@dataclass
class Ran:
    """What one run left: the project files, the CLI's events, the traffic, the spend."""

    files: dict[str, str]
    summary: Summary
    exchanges: list[Exchange]
    usage: Usage
    seconds: float
    transcript: Path
    notes: list[str] = field(default_factory=list)
    limit: str = ""  # the limit that stopped it, in words ('' if none)


@dataclass
class AgentRun:
    """Run `client` on `prompt` in `folder` (made fresh), `skill` installed where it loads
    skills (none for a baseline)."""

    client: Client
    program: str
    folder: Path
    prompt: str
    model: str
    skill: Skill | None
    upstream: str
    credentials: dict[str, str]
    replay: list[Exchange] | None = None
    seconds: float = 600.0
    max_tokens: int | None = None
    turns: int | None = None
    pass_env: tuple[str, ...] = ()
    memory_gib: float = 64.0  # of the CLI and all it starts, resident
    disk_bytes: int = 10 << 30  # of its folder: workspace, home and what they hold

    def run(self) -> Ran:
        workspace, home, sockets = self._prepare()
        proxy = Proxy(
            sockets / "proxy.sock",
            self.upstream,
            self.credentials,
            self.client.routes,
            self.replay,
            self.max_tokens,
            timeout_s=self.seconds,
        )
        launch = self.client.launch(
            self.program, self.prompt, self.model, proxy.inside_url(_PORT), self.turns, home
        )
        environ = {
            **passed_environ(self.pass_env),
            "HOME": str(HOME),
            "TMPDIR": str(HOME / "tmp"),  # Landlock lets it write only its own folders
            **launch.environ,
        }
        bridge = [
            sys.executable,
            "-m",
            "pytest_upskill.clients.bridge",
            str(_SOCKETS / "proxy.sock"),
            str(_PORT),
            "--",
            *launch.argv,
        ]
        box = Sandbox(
            tuple(self._readable()),
            (),
            environ,
            WORKSPACE,
            places=((workspace, WORKSPACE), (home, HOME), (sockets, _SOCKETS)),
            network=True,
            limits=Limits(),
        )
        transcript = self.folder / "transcript.jsonl"
        started = time.monotonic()
        with proxy:
            # Pipes, each read into its file up to a cap: nothing in the sandbox holds a file
            # of this process's, to rewrite or to grow without end.
            process = subprocess.Popen(
                box.command(bridge, "bubblewrap"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=environ,
                cwd=workspace,
                start_new_session=True,
            )
            readers = [
                _drain(cast(BufferedReader, process.stdout), transcript, _TRANSCRIPT_CAP),
                _drain(
                    cast(BufferedReader, process.stderr), self.folder / "stderr.log", _STDERR_CAP
                ),
            ]
            try:
                status, limit = self._watch(process, started)
            finally:  # Ctrl-C too: the CLI goes with the session
                kill_tree(process.pid)
                process.wait()
                for reader in readers:
                    reader.join(timeout=5)
        took = time.monotonic() - started
        events = json_events(_head(transcript, _TRANSCRIPT_CAP))
        summary = self.client.summary(events)
        notes = [f"the proxy refused: {why}" for why in proxy.refused[:5] if why != proxy.limit]
        others = sorted({e.model for e in proxy.exchanges} - {self.model, ""}) if self.model else []
        if others:  # a helper model of the CLI's, or a request of the model's own making
            notes.append(f"requests went to models besides {self.model}: {', '.join(others[:5])}")
        if proxy.unmatched:
            raise SampleError(
                "generate",
                f"{self.client.name} asked what its recording does not hold "
                f"({'; '.join(proxy.unmatched[:3])}): the CLI or the task changed since it was "
                "recorded; record again with --upskill-record=all",
            )
        if not events and status not in (0, None) and not proxy.exchanges:
            said = _head(self.folder / "stderr.log", 4000).strip().splitlines()
            raise SampleError(
                "generate",
                f"{self.client.name} exited with status {status} before asking its model: "
                f"{said[-1][:300] if said else 'it said nothing'}",
            )
        files, left_out = harvest(workspace)
        return Ran(
            files=files,
            summary=summary,
            exchanges=list(proxy.exchanges),
            usage=proxy.usage,
            seconds=took,
            transcript=transcript,
            notes=notes + left_out[:10],
            limit=limit or proxy.limit,
        )

    def _watch(self, process: subprocess.Popen[bytes], started: float) -> tuple[int | None, str]:
        """Wait for the CLI to end: its exit status, or the limit (time, memory, disk) it
        reached first, in words."""
        checked = started
        while True:
            try:
                return process.wait(timeout=0.5), ""
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now - started >= self.seconds:
                return None, f"time limit {self.seconds:g} s reached"
            if tree_memory_gib(process.pid) > self.memory_gib:
                return None, f"memory limit {self.memory_gib:g} GiB reached"
            if now - checked >= 2:  # a walk of the folder: not every half second
                checked = now
                if bytes_written(self.folder) > self.disk_bytes:
                    return None, f"disk limit {self.disk_bytes / 2**30:g} GiB reached"

    def _prepare(self) -> tuple[Path, Path, Path]:
        shutil.rmtree(self.folder, ignore_errors=True)
        workspace, home, sockets = (self.folder / name for name in ("workspace", "home", "run"))
        for path in (workspace, home / "tmp", sockets):
            path.mkdir(parents=True)
        (workspace / TASK_FILE).write_text(self.prompt, encoding="utf-8", errors="replace")
        if self.skill is not None:
            install_skill(self.skill, self.client.skills_dir(workspace))
        return workspace, home, sockets

    def _readable(self) -> list[Path]:
        """The system, this Python (a CLI may build and test what it writes) and the CLI's
        own installation: node and its package, wherever they are."""
        paths = [*system_paths(), *python_paths()]
        program = Path(self.program).resolve()
        for parent in program.parents:
            if parent.name == "node_modules":
                paths.append(parent)
                break
        else:
            paths.append(program.parent)
        node = shutil.which("node")
        if node:
            paths.append(Path(node).resolve().parent.parent)
        return paths


def _drain(stream: BufferedReader, path: Path, cap: int) -> threading.Thread:
    """Copy `stream` into `path` up to `cap` bytes, and read the rest away (a CLI blocked on a
    full pipe would never end), in a thread of its own."""

    def copy() -> None:
        kept = 0
        with stream, open(path, "wb") as out:
            while piece := stream.read1(1 << 16):
                if kept < cap:
                    out.write(piece[: cap - kept])
                    kept += len(piece)

    thread = threading.Thread(target=copy, name="upskill-agent-output", daemon=True)
    thread.start()
    return thread


def _head(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as stream:
            return stream.read(size).decode("utf-8", "replace")
    except OSError:
        return ""
