"""One sample's journey: generate -> extract -> build -> load, each stage in its own module."""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from .config import ModelSpec, Settings
from .errors import SampleFailed, SampleSkipped, Stage, UpskillIssue
from .generate.prompt import Prompt
from .generate.providers import Message, Request, ToolCall, Usage
from .project.build import Build, build_project
from .project.extract import extract_files
from .project.layout import load_project, write_project
from .project.policy import check_project, check_task_rules
from .report.results import (
    Outcome,
    SampleRecord,
    SpeedupRecord,
    TurnRecord,
    UsageRecord,
    speedup_fields,
)
from .run.load import NO_DEVICE, device_mismatch, load_kernel
from .task import Task

if TYPE_CHECKING:
    from .generate.replies import Replies
    from .run.sandbox import Mechanism
    from .skill import Skill
    from .task import TextTask

__all__ = ["Sample", "SampleParams", "active_sample"]

# The sample whose test is running: check.speedup records on it.
_active: ContextVar[Sample | None] = ContextVar("upskill_active_sample", default=None)


def active_sample() -> Sample | None:
    """The sample whose test body is running, if any."""
    return _active.get()


@dataclass(frozen=True)
class SampleParams:
    """The parameter of one upskill item: which model, condition and repeat it runs."""

    model: ModelSpec
    condition: str
    index: int
    task: Task | TextTask

    @property
    def id(self) -> str:
        return f"{self.model.label}-{self.condition}-{self.index}"

    @staticmethod
    def of(item: pytest.Item) -> SampleParams | None:
        """The params of an upskill item (a marked test's, or an upskill test case's)."""
        callspec = getattr(item, "callspec", None)
        params = callspec.params.get("_upskill_params") if callspec else None
        params = params or getattr(item, "sample_params", None)  # an upskill test case's item
        return params if isinstance(params, SampleParams) else None


@dataclass
class Sample:
    """What happened to one sample; the `upskill_sample` fixture."""

    nodeid: str
    test: str
    params: SampleParams
    skill: Skill | None
    directory: Path
    request: Request | None = None
    reply: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False
    truncated: bool = False  # the reply stopped at --upskill-max-tokens
    first_token_s: float | None = None
    generation_s: float | None = None
    wait_s: float = 0.0
    started_at: float | None = None
    cost_usd: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    build: Build | None = None
    stage: Stage = "generate"
    issue: UpskillIssue | None = None
    warnings: list[str] = field(default_factory=list)
    isolation: str = "off"  # where its kernel loads and runs: sandbox, process or off
    since: float = 0.0  # when the session began (seconds since the epoch)
    speedups: list[SpeedupRecord] = field(default_factory=list)
    # An agent loop (--upskill-turns): the turn this is, the conversation after the task's own
    # message, what each turn reached, and why the loop stopped short of a pass.
    turn: int = 1
    started: float = field(default_factory=time.monotonic)  # for an agent loop's time limit
    history: tuple[Message, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()  # what the last reply asked to run (tools mode)
    turn_log: list[TurnRecord] = field(default_factory=list)
    passed_at_turn: int | None = None
    limit_note: str = ""
    agent: str = ""  # the loop's mode: tools or feedback ('' for a single reply)
    skill_mode: str = ""  # an agent loop's: preload or disclose
    skill_loaded_at_turn: int | None = None  # a disclosed skill: when the model first read it
    # An agent CLI's: the project its workspace held, the cost it reported, its JSON events.
    delivered: dict[str, str] | None = None
    reported_cost_usd: float | None = None
    transcript: Path | None = None

    @property
    def _build_cached(self) -> bool:
        """Built before this session began: a build another xdist worker made is not cached."""
        return bool(self.build and self.build.cached and self.build.made_at < self.since)

    @property
    def model(self) -> str:
        return self.params.model.label

    @property
    def condition(self) -> str:
        return self.params.condition

    @property
    def index(self) -> int:
        return self.params.index

    @property
    def prompt(self) -> Prompt | None:
        return self.request.prompt if self.request else None

    @property
    def build_log(self) -> str:
        return self.build.log if self.build else ""

    @property
    def workdir(self) -> Path:
        """Where this turn's prompt, reply and project are kept: the sample's folder for the
        first, `turn-N` in it for the next."""
        return self.directory if self.turn == 1 else self.directory / f"turn-{self.turn}"

    def generate(self, replies: Replies, request: Request) -> None:
        """Get the model's reply; it is kept in the sample's directory. A later turn's usage
        and latency add to the earlier turns'."""
        self.stage = "generate"
        self.request = request
        self.workdir.mkdir(exist_ok=True)
        prompt = f"# System\n\n{request.prompt.system}\n\n# User\n\n{request.prompt.user}\n"
        for message in request.history:
            prompt += f"\n# {message.role.title()}\n\n{message.transcript()}\n"
        (self.workdir / "prompt.md").write_text(prompt, encoding="utf-8", errors="replace")
        before, took, cached = self.usage, self.latency_s, self.cached or self.turn == 1
        reply = replies.reply(request)
        self.reply, self.usage, self.latency_s, self.cached = (
            reply.text,
            Usage(
                before.input_tokens + reply.usage.input_tokens,
                before.output_tokens + reply.usage.output_tokens,
            ),
            took + reply.latency_s,
            cached and reply.cached,
        )
        self.truncated, self.first_token_s, self.generation_s, self.wait_s = (
            reply.truncated,
            reply.first_token_s,
            reply.generation_s,
            reply.wait_s,
        )
        # When it was sent, for this session's own replies: a replay's times are another's.
        self.started_at = None if reply.cached else reply.started_at
        self.warnings += reply.notes
        self.tool_calls = reply.tool_calls
        said = Message("assistant", reply.text, reply.tool_calls).transcript()
        (self.workdir / "reply.md").write_text(said, encoding="utf-8", errors="replace")
        if reply.files is not None:  # an agent CLI's workspace
            self.delivered, self.reported_cost_usd = reply.files, reply.reported_cost_usd
            self.limit_note = reply.limit_note
            if reply.transcript and Path(reply.transcript).is_file():
                self.transcript = self.workdir / "transcript.jsonl"
                shutil.copyfile(reply.transcript, self.transcript)

    @property
    def kernel_task(self) -> Task:
        task = self.params.task
        assert isinstance(task, Task), "an upskill test case has no kernel"
        return task

    @property
    def cut_note(self) -> str:
        """What a failure should say when the reply stopped at the token limit ('' if not)."""
        if not self.truncated or self.request is None:
            return ""
        return f"reply cut at --upskill-max-tokens={self.request.max_tokens}"

    def make_project(
        self,
        settings: Settings,
        sandbox: Mechanism | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        """Extract the project from the reply (or take `files`, which an agent's tools wrote),
        check it and build it (the compilers inside `sandbox`); no generated code runs in this
        process. A failure of a reply cut at the token limit says so."""
        try:
            self._make_project(settings, sandbox, files)
        except SampleFailed as failed:
            if not self.cut_note:
                raise
            raise SampleFailed(failed.stage, f"{self.cut_note}: {failed.reason}") from None

    def _make_project(
        self, settings: Settings, sandbox: Mechanism | None, files: dict[str, str] | None
    ) -> None:
        task = self.kernel_task
        self.stage = "extract"
        files = self.delivered if files is None else files
        if files is None:
            assert self.reply is not None, "generate() comes first"
            # A later turn's reply holds the files it changes; the others stay as they were.
            files = extract_files(self.reply)
            if self.turn > 1:
                files = {**self.files, **files}
        root = self.workdir / "project"
        built = 1
        while root.exists():  # an agent may build more than once a turn
            built += 1
            root = self.workdir / f"project-{built}"
        self.files = write_project(files, root)
        project = load_project(root, self.files, task.name)
        self.warnings += project.warnings
        self.stage = "policy"
        binding = task.binding or settings.binding
        check_project(project, task.backend, binding)
        check_task_rules(project, task)
        self.stage = "build"
        self.build = build_project(
            project,
            task,
            settings.build_dir,
            settings.timeout_s,
            binding,
            sandbox,
            settings.precompiled_headers,
        )
        if not self.build.ok:
            raise SampleFailed("build", self.build.reason)
        if self.build.compile_only:
            targets = ", ".join(self.build.targets)
            raise SampleSkipped(
                "build",
                f"built for {targets} (compile only: this torch is a CPU build); {NO_DEVICE}",
            )

    def load(self, settings: Settings) -> ModuleType:
        """Import the built package: the model's code runs from here on."""
        assert self.build is not None, "make_project() comes first"
        task = self.kernel_task
        self.stage = "load"
        binding = task.binding or settings.binding
        module = load_kernel(self.build, task.name, require_ops=binding == "kernel-builder")
        if task.backend == "cuda":
            unrunnable = device_mismatch(self.build.targets)
            if unrunnable:
                targets = ", ".join(self.build.targets)
                raise SampleSkipped("load", f"built for {targets}; {unrunnable}")
        self.stage = "check"
        return module

    def raise_for_setup(self) -> None:
        """Harness errors end the test in setup (pytest's "error"), and what this machine cannot
        run skips it there; model failures wait for the call, so pytest reports them as
        failures."""
        if self.issue is None:
            return
        if self.issue.outcome == "skipped":
            pytest.skip(self.issue.reason)
        if self.issue.outcome == "error":
            raise self.issue

    @contextmanager
    def active(self) -> Iterator[None]:
        """Make this the sample `check.speedup` records on while its test runs."""
        token = _active.set(self)
        try:
            yield
        finally:
            _active.reset(token)

    def add_speedup(
        self, kernel_s: float, reference_s: float, shape: str, warnings: list[str]
    ) -> None:
        """Keep one `check.speedup` measurement for the record."""
        self.speedups.append(
            SpeedupRecord(
                shape=shape, kernel_s=kernel_s, reference_s=reference_s, warnings=warnings
            )
        )

    def _digest(self) -> str:
        """The reply's hash, to count repeats; none for the oracle, which repeats by design."""
        if not self.reply or self.params.model.provider == "oracle":
            return ""
        return hashlib.sha256(self.reply.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def record(self, outcome: Outcome, reason: str) -> SampleRecord:
        for note in (self.cut_note, self.limit_note):
            if outcome == "failed" and note and note not in reason:
                reason = f"{note}: {reason}"
        return SampleRecord(
            nodeid=self.nodeid,
            test=self.test,
            model=self.model,
            condition=self.condition,
            sample=self.index,
            outcome=outcome,
            stage=self.stage,
            reason=reason,
            usage=UsageRecord(
                input_tokens=self.usage.input_tokens, output_tokens=self.usage.output_tokens
            ),
            latency_s=round(self.latency_s, 4),
            truncated=self.truncated,
            first_token_s=_rounded(self.first_token_s),
            generation_s=_rounded(self.generation_s),
            wait_s=round(self.wait_s, 4),
            started_at=self.started_at,
            turns=self.turn,
            passed_at_turn=self.passed_at_turn,
            per_turn=self.turn_log,
            agent=self.agent,
            skill_mode=self.skill_mode,
            skill_loaded_at_turn=self.skill_loaded_at_turn,
            transcript=str(self.transcript or ""),
            reply_digest=self._digest(),
            # The first turn's: later turns add only the conversation, the model's own.
            prompt_digest=self.prompt.digest() if self.prompt else "",
            skill_tokens_estimate=self.prompt.skill_tokens_estimate if self.prompt else 0,
            cached=self.cached,
            cost_usd=self.cost_usd,
            temperature=self.request.temperature if self.request else None,
            max_tokens=self.request.max_tokens if self.request else None,
            built=bool(self.build and self.build.ok),
            # Built before this session began: a build another xdist worker made is not cached.
            build_cached=self._build_cached,
            build_cpu_s=self.build.cpu_s if self.build and not self._build_cached else 0.0,
            compile_only=bool(self.build and self.build.compile_only),
            directory=str(self.directory),
            build_directory=self.build.directory if self.build else "",
            warnings=self.warnings,
            isolation=self.isolation,
            **speedup_fields(self.speedups),
        )


def directory_name(test: str, params: SampleParams) -> str:
    """A short, filesystem-safe folder name for a sample."""
    return re.sub(r"[^\w.-]+", "_", f"{test}-{params.id}")[:60]


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)
