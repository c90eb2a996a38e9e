"""The `upskill` marker -> one validated task: what a test asks the model for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .config import Binding

__all__ = ["Task", "TaskInvalid", "TextTask", "task_from_marker"]

_PACKAGE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_CAPABILITY = re.compile(r"\d+\.\d+[af]?")


class TaskInvalid(Exception):
    """The marker's arguments do not describe a task."""


class Task(BaseModel):
    """What one upskill test asks for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1)
    name: str
    backend: Literal["cuda", "cpu"] = "cuda"
    capability: str = "9.0a"
    reference: Path | None = None
    binding: Binding | None = None  # None: the session's setting
    # Patterns (regular expressions, or plain text where they are not one) the project's
    # sources must not hold, comments and strings aside: ATen compute ops, a second stream.
    forbid: tuple[str, ...] = ()
    # Regular expressions over qualified ATen operator names (`aten::_softmax`): the kernel's
    # calls in check.assert_correct and check.speedup must run none that one matches.
    forbid_ops: tuple[str, ...] = ()
    # cuda backend: the project must define a __global__ function and launch it.
    require_launch: bool = True

    @field_validator("forbid", "forbid_ops", mode="before")
    @classmethod
    def _patterns(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            example = "at::layer_norm" if info.field_name == "forbid" else "aten::_softmax"
            raise ValueError(f"must be a list of patterns, such as [{example!r}]")
        return value

    @field_validator("forbid", "forbid_ops")
    @classmethod
    def _nonempty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not pattern.strip() for pattern in value):
            raise ValueError("holds an empty pattern")
        return value

    @field_validator("forbid_ops")
    @classmethod
    def _regular_expressions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"holds {pattern!r}, not a regular expression: {exc}") from None
        return value

    @field_validator("name")
    @classmethod
    def _package_name(cls, value: str) -> str:
        if not _PACKAGE_NAME.fullmatch(value):
            raise ValueError(
                "must be a Python package name: lowercase letters, digits and underscores"
            )
        return value

    @field_validator("capability")
    @classmethod
    def _capability(cls, value: str) -> str:
        if not _CAPABILITY.fullmatch(value):
            raise ValueError("must be a CUDA capability such as '9.0a', '9.0' or '8.9'")
        return value

    @property
    def target(self) -> str:
        """The hardware target in words, for prompts and skip reasons."""
        if self.backend == "cpu":
            return "x86-64 CPU"
        return f"sm_{self.capability.replace('.', '')}"


@dataclass(frozen=True)
class TextTask:
    """What one upskill test case asks for: a reply that holds every expected string. No kernel:
    its samples go generate -> check."""

    name: str  # the case's item name
    prompt: str  # the case's input, its context files appended as upskill appends them
    contains: tuple[str, ...]  # each must appear in the reply, ignoring case
    source: Path  # the file the case comes from
    # upskill's custom validators (run in a workspace) have no equivalent here
    validator: str | None = None


def task_from_marker(
    args: tuple[Any, ...], kwargs: dict[str, Any], test_name: str, test_file: Path
) -> Task:
    """Build the task of `@pytest.mark.upskill(...)` on `test_name` defined in `test_file`."""
    if len(args) != 1 or not isinstance(args[0], str):
        raise TaskInvalid(
            "@pytest.mark.upskill takes the task text (or a path to a .md file) "
            "as its one positional argument"
        )
    prompt = args[0]
    base = test_file.parent
    if prompt.endswith(".md") and "\n" not in prompt:
        prompt_file = base / prompt
        if not prompt_file.is_file():
            raise TaskInvalid(f"@pytest.mark.upskill: task file {prompt_file} does not exist")
        prompt = prompt_file.read_text(encoding="utf-8")
    fields = dict(kwargs)
    fields.setdefault("name", test_name)
    if fields.get("reference") is not None:
        reference = base / str(fields["reference"])
        if not reference.is_dir():
            raise TaskInvalid(f"@pytest.mark.upskill: reference {reference} is not a directory")
        fields["reference"] = reference
    try:
        return Task(prompt=prompt.strip(), **fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = (
                "is not an argument of the marker (name, backend, capability, reference, binding, "
                "forbid, forbid_ops, require_launch)"
            )
        raise TaskInvalid(f"@pytest.mark.upskill: {field} {message}") from None
