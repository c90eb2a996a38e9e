"""What a turn ended with, and what the model is told about it.

Everything here comes from generated code's build and test (compiler output, the test's
failure): it is capped, and this process's secrets are redacted, before it goes to the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import Stage
from ..report.results import Outcome
from ..sanitize import redacted

if TYPE_CHECKING:
    from ..run.kernels import Verdict
    from ..run.wire import Result
    from ..sample import Sample

__all__ = ["Ending", "ending_of", "feedback_message"]

_DETAIL_CAP = 3000  # characters of compiler output or test failure the model is shown
_REASON_CAP = 500


@dataclass(frozen=True)
class Ending:
    """How one turn ended: passed, failed (another turn may fix it) or stopped (an error or a
    skip: no turn can change it)."""

    kind: Literal["passed", "failed", "stopped"]
    stage: Stage
    reason: str = ""
    detail: str = ""
    outcome: Outcome = "failed"  # as the sample's record would say: a stop is an error or a skip


def ending_of(sample: Sample, outcome: Result | Verdict | None) -> Ending:
    """The ending of the sample's current turn: its issue before the kernel ran (`outcome`
    None), or what its test process brought back."""
    from ..run.kernels import Verdict

    if outcome is None:
        issue = sample.issue
        assert issue is not None, "no outcome means the sample stopped at an issue"
        if issue.outcome != "failed":
            return Ending("stopped", issue.stage, issue.reason, outcome=issue.outcome)
        return Ending("failed", issue.stage, issue.reason, _build_errors(sample))
    if isinstance(outcome, Verdict):
        if outcome.harness:
            return Ending("stopped", outcome.stage, outcome.reason, outcome="error")
        return Ending("failed", outcome.stage, outcome.reason, outcome.detail)
    if outcome.outcome == "passed":
        return Ending("passed", outcome.stage, outcome="passed")
    if outcome.outcome != "failed":
        return Ending("stopped", outcome.stage, outcome.reason, outcome=outcome.outcome)
    call = [phase.text for phase in outcome.reports if phase.when == "call"]
    return Ending("failed", outcome.stage, outcome.reason, call[0] if call else "")


def feedback_message(ending: Ending, ask_to_fix: bool = True) -> str:
    """The next user message of a feedback loop (or a tool's result, without the request to
    fix it): where the project ended and why."""
    reason = redacted(ending.reason.strip())[:_REASON_CAP]
    lines = [f"Your project did not pass: it ended at stage {ending.stage}: {reason}"]
    detail = redacted(ending.detail.strip())
    if detail and detail != reason:
        if len(detail) > _DETAIL_CAP:
            detail = detail[:_DETAIL_CAP] + "\n[... cut]"
        lines += ["", "```", detail.replace("```", "'''"), "```"]
    if ask_to_fix:
        lines += [
            "",
            "Fix it. Reply with each file you change, whole, in the same format as before; the "
            "files you leave out stay as they are.",
        ]
    return "\n".join(lines)


def _build_errors(sample: Sample) -> str:
    """The build log from its first error on: what a compiler's user reads first."""
    log = sample.build_log
    lines = log.splitlines()
    first = next((i for i, line in enumerate(lines) if "error" in line.lower()), None)
    return "\n".join(lines[first:]) if first is not None else ""
