"""The agent loop in tools mode: each turn, the model's tool calls run on its project (see
`tools`), and their results are the next message; a passing test ends it, and so does submit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SampleFailed
from ..generate.providers import Message, ToolResult
from .feedback import Ending
from .loop import Loop
from .tools import OverTime, Stopped, Workbench

if TYPE_CHECKING:
    from ..run.kernels import Verdict
    from ..run.wire import Result

__all__ = ["MAX_CALLS", "NO_CALL", "ToolLoop"]

MAX_CALLS = 64  # tool calls run in one turn; the turn limit alone would not bound the builds

# The next message after a reply that called no tool: the model may only be thinking aloud.
NO_CALL = (
    "Use the tools: write the project's files with write_file, build, run_tests, and submit "
    "when you are done."
)


class ToolLoop(Loop):
    def run(self) -> Result | Verdict | None:
        sample = self.sample
        disclose = self.settings.skill_mode == "disclose"
        bench = Workbench(
            sample, self.settings, self.sandbox, self.run_kernel, self.skill, disclose
        )
        bench.over_time = self.limits.over_time
        if sample.issue is not None:  # the model could not be asked: an error, as ever
            return None
        while True:
            calls = sample.tool_calls
            results: list[ToolResult] = []
            try:
                for index, call in enumerate(calls):
                    if index >= MAX_CALLS:
                        said = f"at most {MAX_CALLS} tool calls a turn: this one did not run"
                        results.append(ToolResult(call.id, said, is_error=True))
                        continue
                    results.append(bench.call(call))
                    if bench.passed or bench.submitted:
                        break
            except Stopped as stopped:  # the harness could not build or test: no call helps
                self.log(stopped.ending, [c.name for c in calls])
                return bench.outcome
            except OverTime as over:  # before a build or test: the limit ends the sample
                self.log(self._ending(bench), [c.name for c in calls[: len(results) + 1]])
                return self._fail(bench, str(over))
            if bench.skill_read:
                self.loaded()
            ending = self._ending(bench)
            self.log(ending, [call.name for call in calls[: len(results)]])
            if bench.passed:
                sample.passed_at_turn = sample.turn
                return bench.outcome
            limit = "" if bench.submitted else self.limits.reached(sample)
            if bench.submitted or limit:
                return self._fail(bench, limit)
            said = "" if calls else NO_CALL
            answered = self.ask(
                Message("assistant", sample.reply or "", calls),
                Message("user", said, tool_results=tuple(results)),
            )
            if not answered:  # the provider failed mid-conversation: an error
                return None

    def _ending(self, bench: Workbench) -> Ending:
        """Where the project stands after this turn's calls."""
        if bench.ending is not None and bench.current():
            return bench.ending
        if not bench.files:
            return Ending("failed", "extract", "the model wrote no file")
        if bench.built == bench.files:
            return Ending("failed", "load", "the project built, but its test did not run")
        if bench.built is None:
            return Ending("failed", "extract", "the project was never built")
        return Ending("failed", "extract", "the project changed after its last build")

    def _fail(self, bench: Workbench, limit: str) -> Result | Verdict | None:
        """The sample fails where its project stands: its last test or failed build when that
        was of the project as it is, else the stage it reached; naming the limit that ended it
        (none when the model submitted)."""
        sample = self.sample
        if bench.ending is not None and bench.current():
            if bench.outcome is not None:
                sample.limit_note = limit
                return bench.outcome
            if limit:
                self.stop_at(limit)
            return None
        ending = self._ending(bench)
        reason = f"{limit}: {ending.reason}" if limit else ending.reason
        sample.issue, sample.stage = SampleFailed(ending.stage, reason), ending.stage
        return None
