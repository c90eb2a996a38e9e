"""The agent loop's tools: what the model may call, and what each call does.

Every argument comes from the model and is checked as a reply's files are: paths relative and
inside the project, sizes capped. A malformed call (an unknown tool, arguments that are not a
JSON object, a path outside the project, a file too large) gets a tool error the model reads,
never a crash. The build runs in the sandbox and the test in the sandboxed test process, as a
single reply's do; what they report is capped and redacted before the model sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SampleError, SampleFailed, UpskillIssue
from ..generate.providers import Tool, ToolCall, ToolResult
from ..generate.providers._sdk import arguments_object
from ..project.extract import MAX_FILE_BYTES, MAX_FILES, MAX_REPLY_BYTES, check_path
from ..sanitize import redacted
from .feedback import Ending, ending_of, feedback_message

if TYPE_CHECKING:
    from ..config import Settings
    from ..run.kernels import Verdict
    from ..run.sandbox import Mechanism
    from ..run.wire import Result
    from ..sample import Sample
    from ..skill import Skill

__all__ = [
    "READ_SKILL_FILE",
    "TOOLS",
    "OverTime",
    "Stopped",
    "Workbench",
    "skill_file",
    "tools_for",
]

_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
_PATH = {"type": "string", "description": "a path relative to the project root"}

TOOLS = (
    Tool("list_files", "List the paths of the project's files.", _NO_ARGUMENTS),
    Tool(
        "read_file",
        "Read one of the project's files.",
        {"type": "object", "properties": {"path": _PATH}, "required": ["path"]},
    ),
    Tool(
        "write_file",
        "Write one file of the project, whole: create it, or replace what it held.",
        {
            "type": "object",
            "properties": {"path": _PATH, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    ),
    Tool(
        "build",
        "Build the project as it stands: the stage it reached, and the first compiler errors.",
        _NO_ARGUMENTS,
    ),
    Tool(
        "run_tests",
        "Build the project if it changed, then run the task's own test on it: whether it "
        "passed, or where and how it failed. A pass ends the task.",
        _NO_ARGUMENTS,
    ),
    Tool(
        "submit",
        "End the task: the project as it stands is your answer (built and tested if it "
        "changed since its last test).",
        _NO_ARGUMENTS,
    ),
)
READ_SKILL_FILE = Tool(
    "read_skill_file",
    "Read a file of an available skill: SKILL.md first, then the files it names.",
    {
        "type": "object",
        "properties": {
            "skill": {"type": "string", "description": "the skill's name"},
            "path": {"type": "string", "description": "a path inside the skill, e.g. SKILL.md"},
        },
        "required": ["skill", "path"],
    },
)
_READ_CAP = 100_000  # characters of a file the model reads back in one call


class _Refused(Exception):
    """A tool call the model got wrong: its message is the tool error the model reads."""


class Workbench:
    """The project an agent is writing, and its tools over it, for one sample."""

    def __init__(
        self,
        sample: Sample,
        settings: Settings,
        sandbox: Mechanism | None,
        run_kernel: Callable[[], Result | Verdict],
        skill: Skill | None = None,
        disclose: bool = False,
    ) -> None:
        self.sample = sample
        self.settings = settings
        self.sandbox = sandbox
        self.run_kernel = run_kernel
        self.skill = skill
        # read_skill_file is offered in every condition when skills are disclosed, so baseline
        # and skill get the same tools; a baseline has no skill to read.
        self.disclose = disclose
        self.files: dict[str, str] = {}
        self.built: dict[str, str] | None = None  # the files of the last build
        self.tested: dict[str, str] | None = None  # the files of the last test
        self.ending: Ending | None = None  # of the last build or test
        self.outcome: Result | Verdict | None = None  # of the last test
        self.submitted = False
        self.skill_read = False
        # The loop's time limit in words once reached: checked before each build and test.
        self.over_time: Callable[[], str] = lambda: ""

    @property
    def passed(self) -> bool:
        return self.ending is not None and self.ending.kind == "passed"

    def call(self, call: ToolCall) -> ToolResult:
        """Run one tool call; whatever the model got wrong comes back as a tool error."""
        try:
            arguments = arguments_object(call.arguments or "{}")
            if arguments is None:
                # The conversation carries {} in its place: quote what the model wrote.
                raise _Refused(
                    f"the arguments must be a JSON object; you wrote {call.arguments[:300]!r}"
                )
            tool = _HANDLERS.get(call.name)
            if tool is None or (call.name == "read_skill_file" and not self.disclose):
                known = ", ".join(t.name for t in tools_for(self.disclose))
                raise _Refused(f"there is no tool {call.name!r}; the tools are {known}")
            content = tool(self, arguments)
        except _Refused as exc:
            # is_error marks it for the model: Anthropic's flag, an "error: " for OpenAI
            return ToolResult(call.id, str(exc)[:2000], is_error=True)
        return ToolResult(call.id, content)

    def current(self) -> bool:
        """Whether the last build or test was of the project as it stands."""
        return self.tested == self.files or self.built == self.files

    # The tools

    def _list(self, arguments: dict[str, Any]) -> str:
        return "\n".join(sorted(self.files)) or "(no files yet)"

    def _read(self, arguments: dict[str, Any]) -> str:
        path = _path(arguments)
        if path not in self.files:
            raise _Refused(f"the project has no file {path!r}")
        return self.files[path][:_READ_CAP]

    def _write(self, arguments: dict[str, Any]) -> str:
        path, content = _path(arguments), arguments.get("content")
        if not isinstance(content, str):
            raise _Refused("content must be a string: the whole file")
        if not _encodable(content):
            raise _Refused("content is not text: it holds a lone surrogate (\\ud800-\\udfff)")
        size = len(content.encode("utf-8"))
        if size > MAX_FILE_BYTES:
            raise _Refused(f"{path} is {size} bytes: a file may hold {MAX_FILE_BYTES}")
        others = {p: c for p, c in self.files.items() if p != path}
        if len(others) + 1 > MAX_FILES:
            raise _Refused(f"a project may hold {MAX_FILES} files")
        if size + sum(len(c.encode("utf-8", errors="replace")) for c in others.values()) > (
            MAX_REPLY_BYTES
        ):
            raise _Refused(f"a project may hold {MAX_REPLY_BYTES} bytes in all")
        self.files = {**others, path: content}
        return f"wrote {path} ({size} bytes)"

    def _build(self, arguments: dict[str, Any]) -> str:
        if not self.files:
            raise _Refused("the project has no files: write them with write_file first")
        if self.built == self.files:
            return "unchanged since the last build: " + self._said()
        limit = self.over_time()
        if limit:
            raise OverTime(limit)
        sample = self.sample
        sample.issue, sample.build, sample.speedups = None, None, []
        self.built, self.tested, self.outcome = dict(self.files), None, None
        try:
            sample.make_project(self.settings, self.sandbox, dict(self.files))
        except UpskillIssue as issue:
            sample.issue = issue
        except Exception as exc:  # outside the test's own phases: never an INTERNALERROR
            sample.issue = SampleError(
                sample.stage, f"pytest-upskill failed: {type(exc).__name__}: {exc}"
            )
        if sample.issue is not None:
            self.ending = ending_of(sample, None)
            if self.ending.kind == "stopped":  # the harness's error, or a skip: no retry helps
                raise Stopped(self.ending)
            return self._said()
        self.ending = None  # built, not tested
        return "built: the project compiled and linked; run_tests runs the task's test on it"

    def _run_tests(self, arguments: dict[str, Any]) -> str:
        if self.tested == self.files and self.ending is not None:
            return "unchanged since the last test: " + self._said()
        said = self._build(arguments)
        if self.sample.issue is not None:
            return said
        limit = self.over_time()
        if limit:
            raise OverTime(limit)
        self.outcome = self.run_kernel()
        self.tested = dict(self.files)
        self.ending = ending_of(self.sample, self.outcome)
        if self.ending.kind == "stopped":
            raise Stopped(self.ending)
        return self._said()

    def _submit(self, arguments: dict[str, Any]) -> str:
        said = self._run_tests(arguments) if self.files else "no files were written"
        self.submitted = True
        return f"submitted; {said}"

    def _read_skill(self, arguments: dict[str, Any]) -> str:
        skill = self.skill
        if skill is None:
            raise _Refused("no skill is available for this task")
        name, path = arguments.get("skill"), arguments.get("path")
        if name != skill.name:
            raise _Refused(f"there is no skill {name!r}; the skill is {skill.name!r}")
        target = skill_file(skill, path) if isinstance(path, str) else None
        if target is None:
            raise _Refused(f"the skill has no file {path!r}; start with SKILL.md")
        self.skill_read = True
        return target.read_text(encoding="utf-8", errors="replace")[:_READ_CAP]

    def _said(self) -> str:
        """What the last build or test ended with, as the model reads it."""
        ending = self.ending
        if ending is None:
            return "built, not tested"
        if ending.kind == "passed":
            return "passed: the task's test passed"
        return feedback_message(ending, ask_to_fix=False)


class OverTime(Exception):
    """The sample's time limit came before a build or test: the loop ends, naming it."""


class Stopped(Exception):
    """A build or test the harness could not run (an error, a skip): no call can change it,
    so the loop ends; it escapes `Workbench.call`."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.reason)
        self.ending = ending


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _path(arguments: dict[str, Any]) -> str:
    path = arguments.get("path")
    if not isinstance(path, str) or not _encodable(path):
        raise _Refused("path must be text: a path relative to the project root")
    try:
        return check_path(path)
    except SampleFailed as refused:
        raise _Refused(redacted(refused.reason)) from None


_HANDLERS: dict[str, Callable[[Workbench, dict[str, Any]], str]] = {
    "list_files": Workbench._list,
    "read_file": Workbench._read,
    "write_file": Workbench._write,
    "build": Workbench._build,
    "run_tests": Workbench._run_tests,
    "submit": Workbench._submit,
    "read_skill_file": Workbench._read_skill,
}


def skill_file(skill: Skill, relative: str) -> Path | None:
    """The file `relative` inside `skill`, or None when it is not one of its files."""
    try:
        path = check_path(relative)
    except SampleFailed:
        return None
    root = skill.path.resolve()
    target = (root / path).resolve()
    return target if target.is_relative_to(root) and target.is_file() else None


def tools_for(disclose: bool) -> tuple[Tool, ...]:
    """The tools the model gets: the same in every condition of a session."""
    return (*TOOLS, READ_SKILL_FILE) if disclose else TOOLS
