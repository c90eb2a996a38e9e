"""Command-line options and ini values -> one validated settings object."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .paths import configured_path, default_build_dir

__all__ = [
    "BASELINE",
    "Binding",
    "Isolation",
    "ModelSpec",
    "RecordMode",
    "ReferencesMode",
    "Settings",
    "load_settings",
]

BASELINE = "baseline"

Binding = Literal["kernel-builder", "any"]
RecordMode = Literal["none", "new", "all", "off"]
# Where generated code is loaded and tested: a child process with writes confined by Landlock,
# a child process, or the pytest process itself (for --pdb).
Isolation = Literal["sandbox", "process", "off"]
ReferencesMode = Literal["list", "inline"]


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

    @property
    def takes_temperature(self) -> bool:
        """Anthropic's API (2026-10-21) refuses sampling parameters; the oracle has none."""
        return self.provider == "openai"


class Settings(BaseModel):
    """Everything the plugin was told, validated once at start-up."""

    model_config = ConfigDict(frozen=True)

    models: tuple[ModelSpec, ...] = ()
    skills: tuple[Path, ...] = ()
    # upskill test case files (a list of cases, {"cases": [...]} or a skill_meta.json).
    cases: tuple[Path, ...] = ()
    # How a skill's references/ files reach the model: listed, or their content inlined.
    skill_references: ReferencesMode = "list"
    baseline: bool = True
    samples: int = Field(default=1, ge=1)
    report: Path | None = None
    build_dir: Path = Field(default_factory=lambda: default_build_dir())
    # Bounds each stage of a sample that runs generated code: build (and any wait for another
    # process's build of the same kernel), load, and the test body.
    timeout_s: float = Field(default=900.0, gt=0)
    isolation: Isolation = "sandbox"
    # Variables generated code gets besides the allow-list (pytest_upskill.environ).
    pass_env: tuple[str, ...] = ()
    # The most memory the process testing a kernel may use; None: half of this machine's.
    memory_limit_gb: float | None = None
    # The most a kernel's test may leave in its sample's folder.
    disk_limit_gb: float = Field(default=4.0, gt=0)
    binding: Binding = "kernel-builder"
    record: RecordMode = "new"
    cassette_dir: Path = Path(".upskill/cassettes")
    concurrency: int = Field(default=8, ge=1)
    temperature: float | None = None  # None: the provider's default
    max_tokens: int = Field(default=16384, ge=1)
    # Gates for CI: a skill condition's pass rate under `fail_under`, or a lift under
    # `min_lift`, fails the session.
    fail_under: float | None = None
    min_lift: float | None = None
    markdown: Path | None = None
    html: Path | None = None
    # USD per million input and output tokens, by model label.
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)


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
    option = "--upskill-" + name.replace("_", "-")
    raise pytest.UsageError(f"{option}: expected {expected}, got {text!r}")


def _optional(
    config: pytest.Config, name: str, valid: Callable[[float], bool], expected: str
) -> float | None:
    """An optional number option: None when neither the option nor its ini twin is given."""
    if not (getattr(config.option, f"upskill_{name}") or config.getini(f"upskill_{name}")):
        return None
    return _number(config, name, "", float, valid, expected)


def _choice(config: pytest.Config, name: str, choices: tuple[str, ...]) -> str:
    """Option `--upskill-NAME` (or its ini twin), one of `choices`; the first is the default."""
    value = str(getattr(config.option, f"upskill_{name}") or config.getini(f"upskill_{name}"))
    if not value:
        return choices[0]
    if value not in choices:
        raise pytest.UsageError(
            f"--upskill-{name.replace('_', '-')}: expected one of {', '.join(choices)}, "
            f"got {value!r}"
        )
    return value


def _prices(lines: list[str]) -> dict[str, tuple[float, float]]:
    """`upskill_prices` lines: `MODEL = INPUT OUTPUT`, USD per million tokens."""
    prices = {}
    for line in lines:
        model, _, numbers = line.rpartition("=")
        try:
            input_price, output_price = (float(n) for n in numbers.split())
        except ValueError:
            raise pytest.UsageError(
                f"upskill_prices: expected 'MODEL = INPUT OUTPUT' (USD per million tokens), "
                f"got {line!r}"
            ) from None
        prices[model.strip()] = (input_price, output_price)
    return prices


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
    cases = [config.invocation_params.dir / p for p in option.upskill_cases or ()]
    if not cases:
        cases = [Path(p) for p in config.getini("upskill_cases")]
    for path in cases:
        if not path.is_file():
            raise pytest.UsageError(f"--upskill-cases: {path} is not a file")

    baseline = False if option.upskill_no_baseline else _ini_bool(config.getini("upskill_baseline"))
    if not baseline and not skills:
        raise pytest.UsageError(
            "--upskill-no-baseline leaves no condition to run: add --upskill-skill=DIR"
        )

    whole = "a whole number of at least 1"
    samples = int(_number(config, "samples", "1", int, lambda n: n >= 1, whole))
    seconds = "a number of seconds above 0"
    timeout_s = _number(config, "timeout", "900", float, lambda s: s > 0, seconds)

    binding = _choice(config, "binding", ("kernel-builder", "any"))
    isolation = _choice(config, "isolation", ("sandbox", "process", "off"))
    pass_env = tuple(option.upskill_pass_env or config.getini("upskill_pass_env"))
    for name in pass_env:
        if not name.isidentifier():
            raise pytest.UsageError(f"--upskill-pass-env: {name!r} is not a variable name")
    memory_limit_gb = _optional(config, "memory_limit", lambda g: g > 0, "a number of GiB above 0")
    disk_limit_gb = _number(
        config, "disk_limit", "4", float, lambda g: g > 0, "a number of GiB above 0"
    )
    references = _choice(config, "skill_references", ("list", "inline"))
    record = _choice(config, "record", ("new", "none", "all", "off"))
    concurrency = int(_number(config, "concurrency", "8", int, lambda n: n >= 1, whole))
    max_tokens = int(_number(config, "max_tokens", "16384", int, lambda n: n >= 1, whole))
    temperature = _optional(config, "temperature", lambda t: 0 <= t <= 2, "a number from 0 to 2")
    rate = "a pass rate from 0 to 1"
    fail_under = _optional(config, "fail_under", lambda r: 0 <= r <= 1, rate)
    min_lift = _optional(config, "min_lift", lambda d: -1 <= d <= 1, "a difference from -1 to 1")

    try:
        return Settings(
            models=models,
            skills=tuple(skills),
            cases=tuple(path.absolute() for path in cases),
            skill_references=cast(ReferencesMode, references),
            baseline=baseline,
            samples=samples,
            report=configured_path(config, "upskill_report", "upskill_report"),
            build_dir=configured_path(config, "upskill_build_dir", "upskill_build_dir")
            or default_build_dir(),
            timeout_s=timeout_s,
            binding=cast(Binding, binding),
            isolation=cast(Isolation, isolation),
            pass_env=pass_env,
            memory_limit_gb=memory_limit_gb,
            disk_limit_gb=disk_limit_gb,
            record=cast(RecordMode, record),
            cassette_dir=configured_path(config, "upskill_cassette_dir", "upskill_cassette_dir")
            or config.rootpath / ".upskill" / "cassettes",
            concurrency=concurrency,
            temperature=temperature,
            fail_under=fail_under,
            min_lift=min_lift,
            markdown=configured_path(config, "upskill_markdown", "upskill_markdown"),
            html=configured_path(config, "upskill_html", "upskill_html"),
            max_tokens=max_tokens,
            prices=_prices(config.getini("upskill_prices")),
        )
    except ValidationError as exc:  # pragma: no cover - each field is checked above
        raise pytest.UsageError(f"upskill settings: {exc}") from None
