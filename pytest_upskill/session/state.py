"""The state of an upskill session: its settings and conditions, where it keeps its scratch
files, the replies it asks for, and how its tests are parametrized. No hooks: the plugin
objects beside it (`samples`, `records`) read it."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .. import __version__
from ..agent import agent_mode
from ..agent.tools import tools_for
from ..config import BASELINE, Settings, load_settings
from ..generate.cassettes import Cassettes
from ..generate.prompt import build_prompt
from ..generate.providers import Request
from ..generate.replies import Replies
from ..keys import child_key
from ..project.build import forget_timeouts
from ..run.gpu import pin_worker_gpu
from ..sample import SampleParams
from ..skill import Skill, SkillInvalid, condition_name, load_skill
from ..task import Task, TaskInvalid, task_from_marker
from .scratch import Scratch, remove_abandoned
from .words import NO_SANDBOX

if TYPE_CHECKING:
    from ..generate.relay import ReplyRelay
    from ..run.sandbox import Mechanism

__all__ = ["WORKER_REFUSED", "Session"]

# How a worker that must not run the session says why: the controller ends the session on it.
WORKER_REFUSED = "pytest-upskill refuses this xdist worker: "


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


class Session:
    """Made at configure time when upskill is asked for; lives on `config.stash`. `open()`
    claims what it needs from the machine, `close()` gives it back."""

    def __init__(
        self,
        settings: Settings,
        skills: list[Skill] | dict[str, Skill],
        workerinput: dict[str, Any] | None = None,
        *,
        child: bool = False,
    ) -> None:
        self.settings = settings
        self.conditions: dict[str, Skill | None] = {BASELINE: None} if settings.baseline else {}
        named = skills if isinstance(skills, dict) else {skill.name: skill for skill in skills}
        self.conditions.update(named)
        self.option_conditions = list(named)  # the --upskill-skill conditions, in order
        self.workerinput = workerinput
        # A child session tests kernels its parent prepared: it asks no model and reports nothing.
        self.child = child
        self.isolation = settings.isolation
        self.sandbox: Mechanism | None = None  # the strongest this machine offers, once open
        self.since = 0.0
        self.scratch = Path()
        self._scratch: Scratch | None = None
        self.replies: Replies | None = None
        self._requests: dict[SampleParams, Request] = {}
        self._digests: dict[Path, str] = {}
        self._sigterm: Any = None
        self._relay: ReplyRelay | None = None

    @property
    def owner(self) -> bool:
        """A plain run or an xdist controller: it owns the scratch folder and writes reports."""
        return self.workerinput is None and not self.child

    @classmethod
    def from_config(cls, config: pytest.Config) -> Session:
        """Validate options and skills before any test runs; problems are UsageErrors."""
        settings = load_settings(config)
        if config.option.usepdb or config.option.trace:  # a debugger needs this process's terminal
            if settings.turns > 1:
                raise pytest.UsageError(
                    "--pdb and --trace test kernels in this process, where an agent loop cannot "
                    "run: use --upskill-turns=1 to debug one reply"
                )
            settings = settings.model_copy(update={"isolation": "off"})
        child = config.stash.get(child_key, None)
        if child is not None:  # shares its parent's session as an xdist worker does
            return cls(settings, _load_skills(settings), child.upskill_input, child=True)
        return cls(settings, _load_skills(settings), getattr(config, "workerinput", None))

    def open(self) -> None:
        """Find the sandbox, pin an xdist worker's GPU, take the scratch folder and SIGTERM."""
        if self.isolation == "sandbox" and not self.child:
            from ..run.sandbox import mechanism

            self.sandbox = mechanism()
            if self.sandbox is None:
                raise pytest.UsageError(NO_SANDBOX)
        if self.workerinput is not None and not self.child:
            self._check_worker(self.workerinput)
            # Before collection: test modules may touch CUDA when imported.
            pin_worker_gpu(self.workerinput.get("upskill_host_worker", 0))
        # Each process has a scratch folder of its own (an xdist worker may be on another
        # machine; the sandboxed child session asks no model and writes nowhere else); the
        # controller's (or a plain run's) start time decides what is a replay.
        if not self.child:
            if self.owner:  # what sessions killed outright left (their workers' folders too)
                remove_abandoned()
            self._scratch = Scratch()
            self.scratch = self._scratch.path
        inherited = self.workerinput or {}
        self.since = float(inherited.get("upskill_since", time.time()))
        forget_timeouts(f"session started at {self.since!r}")  # its workers' `since` is its own
        settings = self.settings
        link = None
        if "upskill_replies" in inherited:  # an xdist worker: the controller asks the models
            from ..generate.relay import ControllerLink

            link = ControllerLink(inherited["upskill_replies"], self.scratch / "transcripts")
        self.replies = Replies(
            Cassettes(settings.cassette_dir, settings.record, self.since),
            settings.concurrency,
            self.scratch,
            settings.request_timeout_s,
            settings,
            link,
        )
        # SIGTERM (a CI runner's cancel) ends the session as Ctrl-C does: the samples that
        # finished still reach the reports.
        main = threading.current_thread() is threading.main_thread()
        if self.owner and main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._sigterm = signal.signal(signal.SIGTERM, _interrupt)

    def skill_digests(self) -> dict[str, str]:
        """The hash of each skill condition's files, by condition."""
        return {name: self._digest(skill) for name, skill in self.conditions.items() if skill}

    def relay(self) -> ReplyRelay:
        """The xdist controller's answers to its workers' requests (made on first use)."""
        from ..generate.relay import ReplyRelay

        if self._relay is None:
            assert self.replies is not None, "the session is not open"
            self._relay = ReplyRelay(
                self.replies,
                self.settings,
                lambda: {self._digest(s): s for s in self.conditions.values() if s is not None},
                lambda: [tools_for(disclose) for disclose in (False, True)],
            )
        return self._relay

    def _check_worker(self, given: dict[str, Any]) -> None:
        """An xdist worker, perhaps on another machine, runs the controller's plugin and skills:
        else its samples would be of other conditions than the report says."""
        if given.get("upskill_version", __version__) != __version__:
            raise pytest.UsageError(
                f"{WORKER_REFUSED}pytest-upskill {__version__} on this xdist worker, "
                f"{given['upskill_version']} on the controller: install the same version"
            )
        ours = self.skill_digests()
        for name, digest in dict(given.get("upskill_skills", {})).items():
            if ours.get(name, digest) != digest:
                raise pytest.UsageError(
                    f"{WORKER_REFUSED}the skill {name} on this xdist worker differs from the "
                    f"controller's (files hashed {ours[name][:12]}, not {digest[:12]}): give "
                    "every worker host the same skills"
                )

    def close(self) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None
        if self.replies is not None:
            self.replies.close()
        if self._scratch is not None:
            self._scratch.remove()
            self._scratch = None

    def task(self, marker: pytest.Mark, test_name: str, test_file: Path) -> Task:
        try:
            return task_from_marker(marker.args, dict(marker.kwargs), test_name, test_file)
        except TaskInvalid as exc:
            problem = f"{test_name}: {exc}"
        pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback

    def condition_of(self, skill: Skill) -> str:
        """The condition of a skill that owns upskill test cases: the --upskill-skill one of the
        same directory, else a new one (named by `condition_name`); SkillInvalid if none fits."""
        for name, known in self.conditions.items():
            if known is not None and known.path.resolve() == skill.path.resolve():
                return name
        taken = {name: known.path if known else None for name, known in self.conditions.items()}
        name = condition_name(skill, taken)
        self.conditions[name] = skill
        return name

    def parameters(self, task: Task) -> list[Any]:
        """models x conditions x samples; the oracle skips tasks that have no reference."""
        parameters = []
        # Skills that own upskill test cases are conditions of those cases only.
        conditions = [c for c in self.conditions if c == BASELINE or c in self.option_conditions]
        for model in self.settings.models:
            for condition in conditions:
                for index in range(self.settings.samples):
                    params = SampleParams(model, condition, index, task)
                    marks = []
                    if model.provider == "oracle" and task.reference is None:
                        marks.append(
                            pytest.mark.skip(
                                reason="the oracle model needs a known-good project: "
                                "add reference='DIR' to the upskill marker"
                            )
                        )
                    parameters.append(pytest.param(params, id=params.id, marks=marks))
        return parameters

    def request(self, params: SampleParams) -> Request:
        """What `params` asks its model: baseline and skill differ only by the skill block. Made
        once per params: at collection's end to prefetch, then when its test starts."""
        if params not in self._requests:
            settings = self.settings
            mode = agent_mode(settings, params.model, isinstance(params.task, Task))
            disclose = bool(mode) and settings.skill_mode == "disclose"
            skill = self.conditions[params.condition]
            # An agent CLI gets the skill installed in its workspace, not in its prompt.
            install = skill if params.model.provider == "agent" else None
            self._requests[params] = Request(
                spec=params.model,
                prompt=build_prompt(
                    params.task,
                    None if install else skill,
                    settings.skill_references,
                    tools=mode == "tools",
                    skill_mode="disclose" if disclose else "preload",
                    workspace=params.model.provider == "agent",
                ),
                install=install,
                install_digest=self._digest(install),
                tools=tools_for(disclose) if mode == "tools" else (),
                task=params.task,
                sample=params.index,
                temperature=self.settings.temperature if params.model.takes_temperature else None,
                max_tokens=self.settings.max_tokens,
                params=self.settings.model_params,
            )
        return self._requests[params]

    def _digest(self, skill: Skill | None) -> str:
        """The hash of a skill's files, read once a session."""
        if skill is None:
            return ""
        if skill.path not in self._digests:
            self._digests[skill.path] = skill.digest()
        return self._digests[skill.path]


def _load_skills(settings: Settings) -> dict[str, Skill]:
    """The skills of the session by condition name; problems are UsageErrors."""
    try:
        skills = [load_skill(path) for path in settings.skills]
    except SkillInvalid as exc:
        raise pytest.UsageError(f"--upskill-skill: {exc}") from None
    named: dict[str, Skill] = {}
    for skill in skills:
        # Skills that share a name (versions of one skill) are all named name@FOLDER.
        shared = sum(other.name == skill.name for other in skills) > 1
        taken = {BASELINE: None, **{n: s.path for n, s in named.items()}}
        if shared:
            taken[skill.name] = None
        try:
            named[condition_name(skill, taken)] = skill
        except SkillInvalid as exc:
            raise pytest.UsageError(f"--upskill-skill: {exc}") from None
    return named
