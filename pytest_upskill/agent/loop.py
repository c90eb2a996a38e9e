"""The agent loop: a sample as a conversation of model turns that ends at the first pass.

`feedback` mode: each turn's reply is in the reply format; the next message says where its
project ended (the stage, the first compiler errors, the failing assertion), and the model
replies with the files it changes. `tools` mode (`tool_loop`): the model writes files, builds and
tests through tool calls. Either way each build runs in the sandbox and each test in the
sandboxed test process, as a single reply's do, and the model is asked from this process.

A limit reached (turns, tokens) ends the sample as failed where its last turn ended, naming the
limit; a provider's or the harness's failure is an error, as in a single reply.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import SampleError, SampleFailed, UpskillIssue
from ..generate.prices import cost_usd
from ..generate.providers import Message
from ..report.results import TurnRecord
from .feedback import Ending, ending_of, feedback_message
from .tools import skill_file

if TYPE_CHECKING:
    from ..config import Settings
    from ..generate.replies import Replies
    from ..run.kernels import Verdict
    from ..run.sandbox import Mechanism
    from ..run.wire import Result
    from ..sample import Sample
    from ..skill import Skill

__all__ = ["FeedbackLoop", "Limits", "Loop"]

# Feedback mode's way to read a disclosed skill: a reply that is only this line.
_READ_SKILL = re.compile(r"\s*READ_SKILL_FILE\s+([\w.-]+)/(\S+)\s*")
_SKILL_CAP = 100_000
_LOGGED_CALLS = 65  # a turn runs 64 (`tool_loop.MAX_CALLS`): the record shows one more at most


@dataclass(frozen=True)
class Limits:
    """What one sample may spend: model turns; tokens, time and cost over all of them."""

    turns: int
    total_tokens: int | None = None
    seconds: float | None = None
    cost_usd: float | None = None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, settings: Settings, sample: Sample) -> Limits:
        return cls(
            settings.turns,
            settings.max_total_tokens,
            settings.max_sample_s,
            settings.max_cost_usd,
            sample.started,  # its first turn's question counts too
        )

    def over_time(self) -> str:
        """The time limit in words, once it is reached ('' before): checked before each build
        and test too, since one turn may hold many."""
        took = time.monotonic() - self.started
        if self.seconds is not None and took >= self.seconds:
            return f"time limit {self.seconds:g} s reached ({took:.0f} s spent)"
        return ""

    def reached(self, sample: Sample) -> str:
        """The limit `sample` has reached, in words ('' if none)."""
        if sample.turn >= self.turns:
            return f"turn limit {self.turns} reached"
        spent = sample.usage.input_tokens + sample.usage.output_tokens
        if self.total_tokens is not None and spent >= self.total_tokens:
            return f"token limit {self.total_tokens} reached ({spent} spent)"
        if self.over_time():
            return self.over_time()
        cost = sample.cost_usd
        if self.cost_usd is not None and cost is not None and cost >= self.cost_usd:
            return f"cost limit ${self.cost_usd:g} reached (${cost:.4f} spent)"
        return ""


class Loop:
    """What both modes share: one sample, whose first turn the model has answered, driven to
    its end; each turn logged; the next turn asked with the conversation so far."""

    def __init__(
        self,
        sample: Sample,
        replies: Replies,
        settings: Settings,
        sandbox: Mechanism | None,
        run_kernel: Callable[[], Result | Verdict],
        skill: Skill | None = None,
    ) -> None:
        self.sample = sample
        self.replies = replies
        self.settings = settings
        self.sandbox = sandbox
        self.run_kernel = run_kernel
        self.skill = skill  # disclosed: the model may read it
        self.limits = Limits.of(settings, sample)
        self._spent = (0, 0, 0.0)

    def run(self) -> Result | Verdict | None:
        """The last test's outcome, or None when the sample ended before a test ran (its
        issue, on the sample, fails the test)."""
        raise NotImplementedError

    def log(self, ending: Ending, tools: list[str] | None = None) -> None:
        """Keep what this turn reached and spent."""
        sample, before = self.sample, self._spent
        now = (sample.usage.input_tokens, sample.usage.output_tokens, sample.latency_s)
        self._spent = now
        sample.turn_log.append(
            TurnRecord(
                turn=sample.turn,
                stage=ending.stage,
                outcome=ending.outcome,
                reason=ending.reason.strip().partition("\n")[0][:500],
                input_tokens=now[0] - before[0],
                output_tokens=now[1] - before[1],
                latency_s=round(now[2] - before[2], 4),
                tool_calls=[name[:64] for name in (tools or [])[:_LOGGED_CALLS]],
            )
        )

    def stop_at(self, limit: str) -> None:
        """The sample fails where its last turn ended, saying which limit stopped it."""
        sample = self.sample
        sample.limit_note = limit
        issue = sample.issue
        if isinstance(issue, SampleFailed) and limit not in issue.reason:
            sample.issue = SampleFailed(issue.stage, f"{limit}: {issue.reason}")
            sample.stage = issue.stage

    def ask(self, *messages: Message) -> bool:
        """The next turn: the conversation so far, then the model's answer; whether it came
        (else the provider's error is the sample's issue). The project's build and issue stay
        as they were: each mode decides what the answer changes."""
        sample = self.sample
        assert sample.request is not None, "the first turn was asked"
        sample.history += messages
        sample.turn += 1
        build, issue = sample.build, sample.issue
        sample.issue = None
        request = dataclasses.replace(sample.request, history=sample.history)
        self.guarded(lambda: sample.generate(self.replies, request))
        sample.cost_usd = cost_usd(sample.params.model, sample.usage, self.settings.prices)
        if sample.issue is not None:
            self.log(ending_of(sample, None))  # the turn the provider failed is on record
            return False
        sample.build, sample.issue = build, issue
        return True

    def guarded(self, step: Callable[[], None]) -> None:
        """Run a step of the sample; what ends it is kept on the sample, never raised."""
        sample = self.sample
        try:
            step()
        except UpskillIssue as issue:
            sample.issue = issue
        except Exception as exc:  # outside the test's own phases: never an INTERNALERROR
            sample.issue = SampleError(
                sample.stage, f"pytest-upskill failed: {type(exc).__name__}: {exc}"
            )

    def loaded(self) -> None:
        """The model read a file of the disclosed skill this turn."""
        if self.sample.skill_loaded_at_turn is None:
            self.sample.skill_loaded_at_turn = self.sample.turn


class FeedbackLoop(Loop):
    def run(self) -> Result | Verdict | None:
        sample = self.sample
        while True:
            read = self._skill_request() if sample.issue is None else None
            if read is not None:  # a turn spent reading the skill: nothing to build
                ending = Ending("failed", "generate", "read a skill file")
                self.log(ending)
                limit = self.limits.reached(sample)
                if limit:
                    reason = f"{limit}: the model wrote no project"
                    sample.issue, sample.stage = SampleFailed("extract", reason), "extract"
                    return None
                if not self.ask(Message("assistant", sample.reply or ""), Message("user", read)):
                    return None
                continue
            if sample.issue is None:
                self.guarded(lambda: sample.make_project(self.settings, self.sandbox))
            outcome = self.run_kernel() if sample.issue is None else None
            ending = ending_of(sample, outcome)
            self.log(ending)
            if ending.kind == "passed":
                sample.passed_at_turn = sample.turn
                return outcome
            if ending.kind == "stopped":
                return outcome
            limit = self.limits.reached(sample)
            if limit:
                self.stop_at(limit)
                return outcome
            said = feedback_message(ending)
            sample.issue, sample.build, sample.speedups = None, None, []  # the reply rebuilds it
            if not self.ask(Message("assistant", sample.reply or ""), Message("user", said)):
                return None

    def _skill_request(self) -> str | None:
        """The answer to a reply that asks for a file of the disclosed skill; None when the
        reply asks for none (or no skill is disclosed)."""
        asked = _READ_SKILL.fullmatch(self.sample.reply or "")
        if self.skill is None or asked is None:
            return None
        name, path = asked.groups()
        target = skill_file(self.skill, path) if name == self.skill.name else None
        if target is None:
            return f"There is no file {path!r} in a skill named {name!r}; start with SKILL.md."
        self.loaded()
        text = target.read_text(encoding="utf-8", errors="replace")[:_SKILL_CAP]
        return f'<skill_file skill="{name}" path="{path}">\n{text}\n</skill_file>'
