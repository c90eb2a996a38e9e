"""The `oracle` model: answers with the task's known-good reference project, or for an upskill
test case with its expected strings."""

from __future__ import annotations

import time
from pathlib import Path

from ...errors import SampleError
from ...project.extract import render_reply
from ...task import TextTask
from .protocol import Reply, Request

__all__ = ["ORACLE_CASE_REPLY", "OracleProvider", "read_project"]

ORACLE_CASE_REPLY = "The oracle (the harness self-test) answers with every expected string:"

_SKIPPED_DIRS = {"__pycache__", "build", ".git"}


def read_project(root: Path, left_out: list[str] | None = None) -> dict[str, str]:
    """The text files of a project directory, by relative POSIX path; a binary file (not UTF-8
    text: a demo's .gif or .mp4) is left out, since a reply holds only text, and its path is
    added to `left_out`."""
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(
            part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts
        ):
            continue
        try:
            files[relative.as_posix()] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            if left_out is not None:
                left_out.append(relative.as_posix())
    return files


class OracleProvider:
    """The harness self-test: the whole pipeline runs with no key and no network."""

    def __init__(self) -> None:
        # Every sample of a task gets the same reply: read each reference once per session.
        self._replies: dict[Path, tuple[str, tuple[str, ...]]] = {}

    def missing_key(self) -> str | None:
        return None

    def prepare(self) -> None:
        pass

    def check(self) -> tuple[str | None, str | None]:
        return None, None

    def close(self) -> None:
        pass

    def generate(self, request: Request) -> Reply:
        task = request.task
        if isinstance(task, TextTask):
            # An upskill test case: the harness self-test is a reply that holds every expected
            # string, so prompt, reply, check and reports run with no key; it measures no skill.
            lines = [ORACLE_CASE_REPLY, *(f"- {text}" for text in task.contains)]
            return Reply(text="\n".join(lines) + "\n")
        reference = task.reference if task is not None else None
        if reference is None:  # the plugin skips such tests before they get here
            raise SampleError("generate", "the oracle model needs the marker's reference=")
        start = time.perf_counter()
        if reference not in self._replies:
            left_out: list[str] = []
            text = render_reply(read_project(reference, left_out))
            said = tuple(f"the oracle left out {path}: not text" for path in left_out[:20])
            self._replies[reference] = (text, said)
        text, notes = self._replies[reference]
        return Reply(text=text, latency_s=time.perf_counter() - start, notes=notes)
