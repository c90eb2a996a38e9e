"""upskill's test cases as pytest items: `skill_meta.json` and upskill's tests files.

A case asks the model for a text reply (no kernel): its `input`, with its `context.files`
appended as upskill appends them, is the prompt, and every `expected.contains` string must appear
in the reply, ignoring case, as upskill checks. The skill whose directory holds the file is one
condition, beside the baseline and any --upskill-skill. A sample goes generate -> check, through
the session's replies, cassettes and records, so the cases reach every report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._compat import tmp_path_factory
from .config import BASELINE
from .keys import runner_key, sample_key, session_key
from .sample import SampleParams
from .skill import Skill, SkillInvalid, load_skill
from .task import TextTask

__all__ = [
    "CaseItem",
    "CasesFile",
    "CasesInvalid",
    "UpskillCase",
    "load_cases",
    "missing_strings",
]

SKILL_META = "skill_meta.json"
_NAME = re.compile(r"[\w.-]+")


class CasesInvalid(Exception):
    """A cases file does not hold valid upskill test cases; one line per problem."""


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contains: list[str]

    @field_validator("contains", mode="before")
    @classmethod
    def _one_string(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # upskill takes one string too


class CaseContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] | None = None


class UpskillCase(BaseModel):
    """One upskill test case, with the fields upskill's own model has."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1)
    context: CaseContext | None = None
    expected: Expected
    output_file: str | None = None
    validator: str | None = None
    validator_config: dict[str, str | int | float | bool] | None = None
    # Ours, not upskill's (upskill refuses unknown fields): the item's name.
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _item_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError("must be letters, digits, '_', '.' and '-' only")
        return value

    def prompt(self) -> str:
        """The user message, as upskill builds it: the input, then each context file fenced
        with its name as the info string."""
        text = self.input
        files = (self.context.files if self.context else None) or {}
        for filename, content in files.items():
            text += f"\n\n```{filename}\n{content}\n```"
        return text


def load_cases(path: Path) -> list[UpskillCase]:
    """The cases of a `skill_meta.json` (its `tests`) or of an upskill tests file (a list, or
    `{"cases": [...]}`); CasesInvalid names the file, each bad case and its field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CasesInvalid(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CasesInvalid(f"{path}: cannot be read: {exc}") from None
    key: str | None
    if isinstance(data, list):
        key, raw = None, data
    elif isinstance(data, dict) and path.name == SKILL_META:
        key, raw = "tests", data.get("tests", [])
    elif isinstance(data, dict) and "cases" in data:  # other keys ignored, as upskill does
        key, raw = "cases", data["cases"]
    else:
        shape = (
            "an object with 'tests'" if path.name == SKILL_META else 'a list or {"cases": [...]}'
        )
        raise CasesInvalid(f"{path}: must be {shape} of upskill test cases")
    if not isinstance(raw, list):
        raise CasesInvalid(f"{path}: field '{key}' must be a list of test cases")
    cases, problems = [], []
    for index, item in enumerate(raw):
        where = f"{key}[{index}]" if key else f"case {index}"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            where += f" ({item['name']})"
        try:
            cases.append(UpskillCase.model_validate(item))
        except ValidationError as exc:
            problems += [f"{path}: {where}: {_problem(error)}" for error in exc.errors()]
    names = [case.name for case in cases if case.name]
    problems += [
        f"{path}: two cases are named {n!r}"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    if problems:
        raise CasesInvalid("\n".join(problems))
    return cases


def _problem(error: Any) -> str:
    parts = [str(part) for part in error["loc"]]
    field = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts).lstrip(".")
    kind = error["type"]
    if not field:
        return "must be an object with 'input' and 'expected'"
    if kind == "missing":
        return f"field '{field}' is required"
    if kind == "extra_forbidden":
        return f"field '{field}' is not a field of an upskill test case"
    return f"field '{field}' {str(error['msg']).removeprefix('Value error, ').lower()}"


def missing_strings(reply: str, contains: tuple[str, ...]) -> list[str]:
    """The expected strings the reply lacks, ignoring case as upskill does."""
    lowered = reply.lower()
    return [text for text in contains if text.lower() not in lowered]


class CasesFile(pytest.File):
    """A file of upskill test cases: one item per case, model, condition and sample."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            cases = load_cases(self.path)
            owner = (
                load_skill(self.path.parent) if (self.path.parent / "SKILL.md").is_file() else None
            )
        except (CasesInvalid, SkillInvalid) as exc:
            raise self.CollectError(str(exc)) from None
        session = self.config.stash.get(session_key, None)
        conditions: list[str] = []
        if session is not None:
            try:
                conditions = self._conditions(session, owner)
            except SkillInvalid as exc:
                raise self.CollectError(str(exc)) from None
        stem = re.sub(r"\W+", "_", owner.name if owner else self.path.stem)
        for index, case in enumerate(cases):
            task = TextTask(
                name=case.name or f"test_{stem}_{index}",
                prompt=case.prompt(),
                contains=tuple(case.expected.contains),
                source=self.path,
                validator=case.validator,
            )
            if session is None or not session.settings.models:
                # Skipped like any upskill test without a model (plugin's collection hook).
                yield CaseItem.from_parent(self, name=task.name, task=task, params=None)
                continue
            for model in session.settings.models:
                for condition in conditions:
                    for sample in range(session.settings.samples):
                        param = SampleParams(model, condition, sample, task)
                        name = f"{task.name}[{param.id}]"
                        yield CaseItem.from_parent(self, name=name, task=task, params=param)

    def _conditions(self, session: Any, owner: Skill | None) -> list[str]:
        """Baseline, the skill that owns the file, then the --upskill-skill ones."""
        names = [BASELINE] if BASELINE in session.conditions else []
        if owner is not None:
            names.append(session.condition_of(owner))
        names += [c for c in session.option_conditions if c not in names]
        return names


class CaseItem(pytest.Item):
    """One sample of one upskill test case: the reply must hold every expected string."""

    def __init__(self, *, task: TextTask, params: SampleParams | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.sample_params = params  # the session prefetches the replies of these
        self.originalname = task.name
        self.add_marker("upskill")  # without a model it is skipped like any upskill test
        if task.validator is not None:
            self.add_marker(
                pytest.mark.skip(
                    reason=f"upskill's validator {task.validator!r} runs in upskill's own "
                    "workspace; pytest-upskill checks expected.contains only"
                )
            )

    def setup(self) -> None:
        assert self.sample_params is not None, "items without a model are skipped"
        runner = self.config.stash[runner_key]
        # The tmp_path_factory fixture's object: a non-Python item has no fixtures.
        sample = runner.start(self, self.sample_params, tmp_path_factory(self.config))
        self.stash[sample_key] = sample
        sample.raise_for_setup()

    def runtest(self) -> None:
        sample = self.stash[sample_key]
        sample.stage = "check"
        missing = missing_strings(sample.reply or "", self.task.contains)
        if missing:
            texts = ", ".join(repr(text) for text in missing)
            pytest.fail(
                f"the reply lacks {len(missing)} of {len(self.task.contains)} expected "
                f"string(s): {texts}",
                pytrace=False,
            )

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"upskill case {self.name}"  # a skip report needs a line
