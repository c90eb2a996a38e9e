"""Builds ahead: a sample's build starts when its reply arrives, not when pytest reaches its
test. The test then finds its build in the cache, or waits for that build's lock: never for
another sample's build.

A bounded pool per process: `--upskill-build-jobs` compiler jobs (default: MAX_JOBS where it is
set, else this machine's cores), shared by the xdist workers of the session, at a lower priority
than the tests' own builds and kernels. With samples enough to fill them, each job runs a build
of its own (`ninja -j1`): a project's sources differ in cost, so builds of two jobs each would
idle one while the longer source compiles. With fewer samples, builds get the jobs between them.
A build ahead skips a project that is cached or that another process is building. At the
session's end the pool is cancelled: waiting builds never start, running ones are killed with
their compilers, and their workspaces are removed.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import UpskillIssue
from ..generate.providers import Reply, Request
from ..pool import DaemonPool
from ..project.build import BuildSetup, build_ahead
from ..project.extract import extract_files
from ..project.layout import load_project, write_project
from ..project.policy import check_project, check_task_rules
from ..run.sandbox import Mechanism
from ..task import Task

if TYPE_CHECKING:
    from .state import Session

__all__ = ["BuildAhead", "default_jobs"]

_NICE = 10  # below the tests' builds, and the kernels a test times
_CLOSE_WAIT_S = 10.0  # a killed build's cleanup; past it the session ends anyway


def default_jobs() -> int:
    """MAX_JOBS where it is set (as torch's extension builds read it), else the cores this
    process may run on."""
    jobs = os.environ.get("MAX_JOBS", "").strip()
    return int(jobs) if jobs.isdigit() and int(jobs) > 0 else len(os.sched_getaffinity(0))


class BuildAhead:
    """This process's builds ahead: a pool of daemon threads, each running one build at a
    time at a lower priority than the tests', and one event that cancels them all."""

    def __init__(
        self,
        settings: Settings,
        sandbox: Mechanism | None,
        scratch: Path,
        processes: int,
        samples: int,
    ) -> None:
        """`processes`: how many processes of the session share this machine's jobs;
        `samples`: how many this process may build."""
        jobs = settings.build_jobs if settings.build_jobs is not None else default_jobs()
        share = max(1, jobs // max(1, processes))
        self.builds = max(1, min(share, samples))  # at once, each with ninja -j `jobs`
        self.jobs = max(1, share // self.builds)
        self._settings = settings
        self._cancel = threading.Event()
        self._setup = BuildSetup(
            settings.build_dir,
            settings.timeout_s,
            sandbox,
            settings.precompiled_headers,
            jobs=self.jobs,
            cancel=self._cancel,
            nice=_NICE,
        )
        self._pool = DaemonPool(self.builds, "upskill-build")
        self._folder = scratch / "ahead"
        self._names = itertools.count()

    @classmethod
    def start(cls, session: Session, requests: list[Request], processes: int) -> BuildAhead | None:
        """Builds ahead for `requests`, the oracle's started now (its replies cost nothing),
        the others' as `reply_arrived` hears of them; None where they are off:
        `--upskill-build-jobs=0`, or agent loops and CLIs, whose builds the agent makes."""
        settings = session.settings
        if settings.build_jobs == 0 or settings.turns > 1:
            return None
        samples = sum(_task_built_ahead(request) is not None for request in requests)
        ahead = cls(settings, session.sandbox, session.scratch, processes, samples)
        replies = session.replies
        assert replies is not None, "the session is not open"
        for request in requests:
            if request.spec.provider == "oracle" and isinstance(request.task, Task):
                ahead.add(request.task, partial(lambda r: replies.reply(r).text, request))
        return ahead

    def reply_arrived(self, request: Request, reply: Reply) -> None:
        """A prefetched reply: its project is built ahead."""
        task = _task_built_ahead(request)
        if task is not None:
            self.add(task, lambda: reply.text)

    def add(self, task: Task, reply: Callable[[], str]) -> None:
        """Build the project of `reply()` (a reply's text, got in the pool's thread) for
        `task`, when a slot is free."""
        if not self._cancel.is_set():
            self._pool.submit(partial(self._build, task, reply))

    def close(self) -> None:
        """Cancel what waits, kill what runs, and wait a little for their cleanup."""
        if self._cancel.is_set():
            return
        self._cancel.set()
        self._pool.shutdown(wait_s=_CLOSE_WAIT_S)

    def _build(self, task: Task, reply: Callable[[], str]) -> None:
        if self._cancel.is_set():
            return
        root = self._folder / str(next(self._names))
        binding = task.binding or self._settings.binding
        try:
            project = load_project(root, write_project(extract_files(reply()), root), task.name)
            check_project(project, task.backend, binding)
            check_task_rules(project, task)
            build_ahead(project, task, binding, self._setup)
        except (UpskillIssue, OSError):
            pass  # the test does it again, and its report says what failed
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _task_built_ahead(request: Request) -> Task | None:
    """The task whose project the reply to `request` is built ahead for, if it is: a task's,
    not an agent CLI's (its files are in its workspace, not in its reply)."""
    task = request.task
    return task if isinstance(task, Task) and request.spec.provider != "agent" else None
