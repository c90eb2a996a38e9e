"""Agent Skills directories: load `SKILL.md`, validate its front matter per the specification."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["Skill", "SkillFrontMatter", "SkillInvalid", "condition_name", "load_skill"]

_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.DOTALL | re.MULTILINE)


class SkillInvalid(Exception):
    """A skill breaks a rule of the Agent Skills specification."""

    def __init__(self, path: Path, rule: str) -> None:
        super().__init__(f"{path}: {rule}")
        self.path = path
        self.rule = rule


class SkillFrontMatter(BaseModel):
    """The YAML front matter of `SKILL.md`; fields that clients add are kept, not fatal."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    description: str = Field(min_length=1, max_length=1024)
    license: str | None = None
    compatibility: str | None = Field(default=None, min_length=1, max_length=500)
    metadata: dict[str, str] | None = None
    allowed_tools: str | None = Field(default=None, alias="allowed-tools")

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                "must be lowercase letters, digits and single hyphens, "
                "not starting or ending with a hyphen"
            )
        return value

    @field_validator("description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @property
    def client_fields(self) -> dict[str, Any]:
        """Fields outside the specification (argument-hint, user-invocable, ...)."""
        return dict(self.model_extra or {})


@dataclass(frozen=True)
class Skill:
    """A loaded skill: one condition of the comparison."""

    path: Path
    front_matter: SkillFrontMatter
    body: str
    references: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.front_matter.name

    def files(self) -> list[Path]:
        """The skill's regular files, in order; links are left out (they may point anywhere)."""
        return sorted(
            path for path in self.path.rglob("*") if path.is_file() and not path.is_symlink()
        )

    def digest(self) -> str:
        """A hash of the skill's files, paths and contents: what decides an installed skill."""
        sha = hashlib.sha256()
        for path in self.files():
            sha.update(path.relative_to(self.path).as_posix().encode() + b"\0")
            sha.update(path.read_bytes() + b"\0")
        return sha.hexdigest()[:20]


def load_skill(directory: Path) -> Skill:
    """Read and validate a skill directory; raise SkillInvalid naming the file and the rule."""
    skill_md = directory / "SKILL.md"
    if not directory.is_dir():
        raise SkillInvalid(directory, "is not a directory holding a SKILL.md")
    if not skill_md.is_file():
        raise SkillInvalid(skill_md, "is missing: a skill directory must hold SKILL.md")
    text = skill_md.read_text(encoding="utf-8")
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise SkillInvalid(skill_md, "must start with YAML front matter between '---' lines")
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise SkillInvalid(skill_md, f"front matter is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SkillInvalid(skill_md, "front matter must be a mapping of fields")
    try:
        front_matter = SkillFrontMatter.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "front matter"
        raise SkillInvalid(skill_md, f"field '{where}' {_rule(first)}") from None
    if front_matter.name != directory.resolve().name:
        raise SkillInvalid(
            skill_md,
            f"field 'name' is {front_matter.name!r} but must match the directory name "
            f"{directory.resolve().name!r}",
        )
    references_dir = directory / "references"
    references = tuple(
        sorted(
            p.relative_to(directory).as_posix() for p in references_dir.rglob("*") if p.is_file()
        )
        if references_dir.is_dir()
        else ()
    )
    return Skill(directory, front_matter, text[match.end() :].strip(), references)


def condition_name(skill: Skill, others: dict[str, Path | None]) -> str:
    """The condition name of `skill` beside the conditions `others` (name -> skill directory):
    its `name`, or `name@FOLDER` (the folder holding its directory) when another skill has that
    name, so two versions of one skill (`v1/my-skill`, `v2/my-skill`) can be compared."""
    if skill.name not in others:
        return skill.name
    qualified = f"{skill.name}@{skill.path.resolve().parent.name}"
    if qualified in others:
        raise SkillInvalid(
            skill.path,
            f"the condition names {skill.name!r} and {qualified!r} are both taken; "
            "put versions of one skill in folders with different names",
        )
    return qualified


def _rule(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "missing":
        return "is required"
    if kind == "string_too_short":
        return f"must have at least {ctx['min_length']} character(s)"
    if kind == "string_too_long":
        return f"must have at most {ctx['max_length']} characters"
    return str(error["msg"]).removeprefix("Value error, ")
