"""Command-line options and ini values -> one validated settings object."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .paths import configured_path, default_build_dir

__all__ = ["BASELINE", "Binding", "ModelSpec", "Settings", "load_settings"]

BASELINE = "baseline"

Binding = Literal["kernel-builder", "any"]


class ModelSpec(BaseModel):
    """One `--upskill-model` value: `oracle`, `anthropic:MODEL`, `openai:MODEL[@BASE_URL]`."""

    model_config = ConfigDict(frozen=True)

    provider: Literal["anthropic", "openai", "oracle"]
    model: str = ""
    base_url: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        text = text.strip()
        if text == "oracle":
            return cls(provider="oracle")
        provider, sep, rest = text.partition(":")
        if not sep or provider not in ("anthropic", "openai") or not rest:
            raise ValueError(
                f"unknown model {text!r}: use anthropic:MODEL, openai:MODEL, "
                "openai:MODEL@BASE_URL or oracle"
            )
        base_url = None
        # Model names may hold ':', '/' and '@' themselves; only '@' followed by a URL ends one.
        name, at, url = rest.rpartition("@")
        if at and url.startswith(("http://", "https://")):
            if provider != "openai":
                raise ValueError(f"model {text!r}: only openai-compatible models take @BASE_URL")
            rest, base_url = name, url
        if not rest:
            raise ValueError(f"model {text!r} names no model")
        return cls.model_validate({"provider": provider, "model": rest, "base_url": base_url})

    @property
    def label(self) -> str:
        """Short, stable text for test ids and tables (the base URL is left out)."""
        return self.provider if self.provider == "oracle" else f"{self.provider}:{self.model}"

    def __str__(self) -> str:
        return self.label if self.base_url is None else f"{self.label}@{self.base_url}"


class Settings(BaseModel):
    """Everything the plugin was told, validated once at start-up."""

    model_config = ConfigDict(frozen=True)

    models: tuple[ModelSpec, ...] = ()
    skills: tuple[Path, ...] = ()
    baseline: bool = True
    samples: int = Field(default=1, ge=1)
    report: Path | None = None
    build_dir: Path = Field(default_factory=lambda: default_build_dir())
    # Bounds a build (and any wait for another process's build of the same kernel).
    timeout_s: float = Field(default=900.0, gt=0)
    binding: Binding = "kernel-builder"


def _ini_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise pytest.UsageError(f"upskill_baseline: expected true or false, got {value!r}")


def _number(
    config: pytest.Config,
    name: str,
    default: str,
    parse: Callable[[str], float],
    valid: Callable[[float], bool],
    expected: str,
) -> float:
    """Option `--upskill-NAME` (or its ini twin) as a number; anything else is a UsageError."""
    text = getattr(config.option, f"upskill_{name}") or config.getini(f"upskill_{name}") or default
    try:
        value = parse(text)
    except ValueError:
        pass
    else:
        if valid(value):
            return value
    raise pytest.UsageError(f"--upskill-{name}: expected {expected}, got {text!r}")


def load_settings(config: pytest.Config) -> Settings:
    """Merge command line over ini; every bad value is a UsageError naming it."""
    option = config.option
    model_texts: list[str] = option.upskill_model or list(config.getini("upskill_models"))
    try:
        models = tuple(dict.fromkeys(ModelSpec.parse(text) for text in model_texts))
    except ValueError as exc:
        raise pytest.UsageError(f"--upskill-model: {exc}") from None

    # Paths on the command line are relative to where pytest was started, in ini to the ini file.
    skills = [config.invocation_params.dir / p for p in option.upskill_skill or ()]
    if not skills:
        skills = [Path(p) for p in config.getini("upskill_skills")]

    baseline = False if option.upskill_no_baseline else _ini_bool(config.getini("upskill_baseline"))
    if not baseline and not skills:
        raise pytest.UsageError(
            "--upskill-no-baseline leaves no condition to run: add --upskill-skill=DIR"
        )

    whole = "a whole number of at least 1"
    samples = int(_number(config, "samples", "1", int, lambda n: n >= 1, whole))
    seconds = "a number of seconds above 0"
    timeout_s = _number(config, "timeout", "900", float, lambda s: s > 0, seconds)

    binding = option.upskill_binding or config.getini("upskill_binding") or "kernel-builder"
    if binding not in ("kernel-builder", "any"):
        raise pytest.UsageError(
            f"--upskill-binding: expected kernel-builder or any, got {binding!r}"
        )

    try:
        return Settings(
            models=models,
            skills=tuple(skills),
            baseline=baseline,
            samples=samples,
            report=configured_path(config, "upskill_report", "upskill_report"),
            build_dir=configured_path(config, "upskill_build_dir", "upskill_build_dir")
            or default_build_dir(),
            timeout_s=timeout_s,
            binding=cast(Binding, binding),
        )
    except ValidationError as exc:  # pragma: no cover - each field is checked above
        raise pytest.UsageError(f"upskill settings: {exc}") from None
