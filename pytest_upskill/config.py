"""Command-line options and ini values -> one validated settings object."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .options import OPTIONS, Option, default_of
from .paths import configured_path, default_build_dir

__all__ = [
    "AGENT_CLIENTS",
    "BASELINE",
    "AgentMode",
    "Binding",
    "Isolation",
    "ModelSpec",
    "RecordMode",
    "ReferencesMode",
    "Settings",
    "SkillMode",
    "distinct",
    "load_settings",
    "public_url",
]

BASELINE = "baseline"

Binding = Literal["kernel-builder", "any"]
RecordMode = Literal["none", "new", "all", "off"]
# Where generated code is loaded and tested: a child process with writes confined by Landlock,
# a child process, or the pytest process itself (for --pdb).
Isolation = Literal["sandbox", "process", "off"]
ReferencesMode = Literal["list", "inline"]
AgentMode = Literal["auto", "tools", "feedback"]
SkillMode = Literal["preload", "disclose"]


_NAME = re.compile(r"([\w.+-]+)=(.+)")  # NAME=SPEC: a name holds no ':', a spec always does
# Agent CLIs that can be the model under test (`pytest_upskill.clients`), and whose API (and
# price list) their models are.
AGENT_CLIENTS = {"claude-code": "anthropic", "codex": "openai"}


class ModelSpec(BaseModel):
    """One `--upskill-model` value: `oracle`, `anthropic:MODEL`, `openai:MODEL[@BASE_URL]`,
    `agent:CLIENT[:MODEL][@BASE_URL]` (an agent CLI, whose model is CLIENT or CLIENT:MODEL),
    any of them as `NAME=SPEC`."""

    model_config = ConfigDict(frozen=True)

    provider: Literal["anthropic", "openai", "oracle", "agent"]
    model: str = ""
    base_url: str | None = None
    name: str | None = None  # the user's NAME for it: what the reports call it
    # The base URL's host and port, in the label when two specs of one model differ by them.
    where: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        text = text.strip()
        named = _NAME.fullmatch(text)
        if named:
            return cls.parse(named[2]).model_copy(update={"name": named[1]})
        if text == "oracle":
            return cls(provider="oracle")
        provider, sep, rest = text.partition(":")
        if not sep or provider not in ("anthropic", "openai", "agent") or not rest:
            raise ValueError(
                f"unknown model {text!r}: use anthropic:MODEL, openai:MODEL, "
                "openai:MODEL@BASE_URL, agent:CLIENT[:MODEL] or oracle, each optionally as "
                "NAME=SPEC"
            )
        base_url = None
        # Model names may hold ':', '/' and '@' themselves; only '@' followed by a URL ends one.
        at = re.search(r"@(?=https?://)", rest)
        if at:
            if provider == "anthropic":
                raise ValueError(
                    f"model {text!r}: Anthropic's SDK reads ANTHROPIC_BASE_URL, not @BASE_URL"
                )
            rest, base_url = rest[: at.start()], rest[at.end() :]
        if not rest:
            raise ValueError(f"model {text!r} names no model")
        if provider == "agent" and rest.partition(":")[0] not in AGENT_CLIENTS:
            raise ValueError(
                f"model {text!r}: unknown agent CLI {rest.partition(':')[0]!r}; use one of "
                f"{', '.join(AGENT_CLIENTS)}"
            )
        return cls.model_validate({"provider": provider, "model": rest, "base_url": base_url})

    @property
    def identity(self) -> str:
        """Provider and model, as price lists and cassette names know it."""
        return self.provider if self.provider == "oracle" else f"{self.provider}:{self.model}"

    @property
    def label(self) -> str:
        """Short, stable text for test ids and tables: unique in a session (`distinct`)."""
        if self.name is not None:
            return self.name
        return self.identity if self.where is None else f"{self.identity}@{self.where}"

    @property
    def endpoint(self) -> tuple[str, str, str | None]:
        """What decides the replies: the same endpoint under two names is one model."""
        return self.provider, self.model, self.base_url

    def __str__(self) -> str:
        url = self.base_url
        spec = self.identity if url is None else f"{self.identity}@{public_url(url)}"
        return spec if self.name is None else f"{self.name}={spec}"

    @property
    def client(self) -> str:
        """The agent CLI of an `agent:` spec ('' for the others)."""
        return self.model.partition(":")[0] if self.provider == "agent" else ""

    @property
    def client_model(self) -> str:
        """The model an agent CLI is told to use ('': the CLI's own default)."""
        return self.model.partition(":")[2] if self.provider == "agent" else self.model

    @property
    def priced_as(self) -> str:
        """Provider and model as the published price list knows it: an agent CLI's model is
        its API's."""
        if self.provider == "agent" and self.client_model:
            return f"{AGENT_CLIENTS[self.client]}:{self.client_model}"
        return self.identity

    @property
    def takes_temperature(self) -> bool:
        """Anthropic's API (2026-10-21) refuses sampling parameters; the oracle has none."""
        return self.provider == "openai"


def distinct(specs: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
    """The session's models, each with a label of its own: unnamed specs of one model that
    differ by base URL get the URL's host and port in their labels. A clash that remains is a
    ValueError naming both specs."""
    specs = tuple(dict.fromkeys(specs))
    by_identity: dict[str, int] = {}
    for spec in specs:
        if spec.name is None:
            by_identity[spec.identity] = by_identity.get(spec.identity, 0) + 1
    labelled = tuple(
        spec.model_copy(update={"where": _host(spec.base_url)})
        if spec.name is None and spec.base_url is not None and by_identity[spec.identity] > 1
        else spec
        for spec in specs
    )
    seen: dict[object, int] = {}
    for index, spec in enumerate(labelled):
        for key in (spec.label, spec.endpoint):
            other = seen.setdefault(key, index)
            if other == index:
                continue
            first, second = specs[other], specs[index]  # as the user wrote them
            if key == spec.endpoint:
                raise ValueError(f"{first} and {second} are one model: give it once")
            raise ValueError(
                f"{first} and {second} would both be labelled {spec.label!r}: "
                "name them apart, as NAME=SPEC"
            )
    return labelled


def public_url(url: str) -> str:
    """`url` without the user:password@ it may hold, for headers, errors and cassettes."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _host(url: str | None) -> str:
    parts = urlsplit(url or "")
    return parts.netloc.rpartition("@")[2] or str(url)  # never a user:password@


class Settings(BaseModel):
    """Everything the plugin was told, validated once at start-up."""

    model_config = ConfigDict(frozen=True)

    models: tuple[ModelSpec, ...] = ()
    skills: tuple[Path, ...] = ()
    # upskill test case files (a list of cases, {"cases": [...]} or a skill_meta.json).
    cases: tuple[Path, ...] = ()
    # How a skill's references/ files reach the model: listed, or their content inlined.
    skill_references: ReferencesMode = default_of("skill_references")
    baseline: bool = True
    samples: int = Field(default=default_of("samples"), ge=1)
    report: Path | None = None
    build_dir: Path = Field(default_factory=lambda: default_build_dir())
    precompiled_headers: bool = True
    # Compiler jobs for builds ahead, shared by the session's processes; None: the cores.
    build_jobs: int | None = Field(default=None, ge=0)
    # Bounds each stage of a sample that runs generated code: build (and any wait for another
    # process's build of the same kernel), load, and the test body.
    timeout_s: float = Field(default=default_of("timeout_s"), gt=0)
    isolation: Isolation = default_of("isolation")
    # Variables generated code gets besides the allow-list (pytest_upskill.environ).
    pass_env: tuple[str, ...] = ()
    # The most memory the process testing a kernel may use; None: half of this machine's.
    memory_limit_gb: float | None = None
    # The most a kernel's test may leave in its sample's folder.
    disk_limit_gb: float = Field(default=default_of("disk_limit_gb"), gt=0)
    binding: Binding = default_of("binding")
    record: RecordMode = default_of("record")
    cassette_dir: Path = Path(".upskill/cassettes")
    concurrency: int = Field(default=default_of("concurrency"), ge=1)
    temperature: float | None = None  # None: the provider's default
    max_tokens: int = Field(default=default_of("max_tokens"), ge=1)
    request_timeout_s: float = Field(default=default_of("request_timeout_s"), gt=0)
    # The agent loop: turns per sample (1: a single reply), how it talks to the model, how a
    # skill reaches it, and the tokens a sample may spend.
    turns: int = Field(default=default_of("turns"), ge=1)
    agent: AgentMode = default_of("agent")
    skill_mode: SkillMode = default_of("skill_mode")
    max_total_tokens: int | None = None
    max_sample_s: float | None = None
    max_cost_usd: float | None = None
    # Sent with every request and part of its cassette key: seed, top_p, stop, ...
    model_params: dict[str, Any] = Field(default_factory=dict)
    # Gates for CI: a skill condition's pass rate under `fail_under`, or a lift under
    # `min_lift`, fails the session.
    fail_under: float | None = None
    min_lift: float | None = None
    markdown: Path | None = None
    html: Path | None = None
    # USD per million input and output tokens, by model label.
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # Campaigns over several runs: this run's shard (I, N), and the report it goes on from.
    shard: tuple[int, int] | None = None
    resume: Path | None = None


def _ini_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise pytest.UsageError(f"{name}: expected true or false, got {value!r}")


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


# What the session sets itself: a parameter may not change them behind its options.
_OWN_PARAMS = {
    "model": "--upskill-model",
    "messages": "the task",
    "system": "the task",
    "max_tokens": "--upskill-max-tokens",
    "max_completion_tokens": "--upskill-max-tokens",
    "temperature": "--upskill-temperature",
    "stream": "pytest-upskill (it streams)",
    "stream_options": "pytest-upskill (it streams)",
}


def _params(name: str, lines: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` lines: VALUE as JSON where it parses (numbers, lists, true), else text."""
    params: dict[str, Any] = {}
    for line in lines:
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise pytest.UsageError(f"{name}: expected KEY=VALUE, got {line!r}")
        if key in _OWN_PARAMS:
            raise pytest.UsageError(f"{name}: {key} is set by {_OWN_PARAMS[key]}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value.strip()
    return params


def _shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*([0-9]{1,6})\s*/\s*([0-9]{1,6})\s*", text)
    if match is not None:
        shard = int(match[1]), int(match[2])
        if 1 <= shard[0] <= shard[1]:
            return shard
    raise pytest.UsageError(f"--upskill-shard: expected I/N with 1 <= I <= N, got {text!r}")


def _number(option: Option, text: str) -> float:
    try:
        value = int(text) if option.kind == "whole" else float(text)
    except ValueError:
        pass
    else:
        if option.valid(value):
            return value
    raise pytest.UsageError(f"{option.cli}: expected {option.expected}, got {text!r}")


def _read(config: pytest.Config, option: Option) -> Any:
    """The option's value from the command line, else from its ini twin; None where neither
    gives one (the Settings default stands). A bad value is a UsageError naming the option."""
    dest = option.cli.removeprefix("--").replace("-", "_") if option.cli else ""
    given: Any = getattr(config.option, dest) if dest else None
    ini: Any = config.getini(option.ini) if option.ini else None
    kind, name = option.kind, option.cli or option.ini
    if kind == "no-flag":
        return False if given else _ini_bool(ini, option.ini or "")
    if kind == "path":
        return configured_path(config, dest, option.ini or "")
    if kind == "prices":
        return _prices(ini)
    if kind == "shard":
        return _shard(str(given or ini or "")) if given or ini else None
    if kind == "params":
        return _params(name or "", list(given or ini or []))
    if kind in ("models", "paths", "names"):
        # Command-line paths are relative to where pytest started; ini paths to the ini file.
        if given:
            values = [config.invocation_params.dir / p for p in given] if kind == "paths" else given
        else:
            values = [Path(p) for p in ini] if kind == "paths" else list(ini)
        if kind == "models":
            try:
                return distinct(tuple(ModelSpec.parse(text) for text in values))
            except ValueError as exc:
                raise pytest.UsageError(f"{name}: {exc}") from None
        for value in values if kind == "names" else ():
            if not value.isidentifier():
                raise pytest.UsageError(f"{name}: {value!r} is not a variable name")
        return tuple(values)
    text = str(given or ini or "")
    if not text:
        return None
    if kind == "choice":
        if text not in option.choices:
            raise pytest.UsageError(
                f"{name}: expected one of {', '.join(option.choices)}, got {text!r}"
            )
        return text
    return _number(option, text)


def load_settings(config: pytest.Config) -> Settings:
    """Merge command line over ini, option by option (`options.OPTIONS`); every bad value is
    a UsageError naming it."""
    values = {option.field: _read(config, option) for option in OPTIONS if option.field is not None}
    settings = {field: value for field, value in values.items() if value is not None}
    for path in settings.get("cases", ()):
        if not path.is_file():
            raise pytest.UsageError(f"--upskill-cases: {path} is not a file")
    settings["cases"] = tuple(path.absolute() for path in settings.get("cases", ()))
    # A cases file beside a SKILL.md brings that skill as a condition (`cases.CasesFile`).
    owned = any((path.parent / "SKILL.md").is_file() for path in settings["cases"])
    if not settings["baseline"] and not settings.get("skills") and not owned:
        raise pytest.UsageError(
            "--upskill-no-baseline leaves no condition to run: add --upskill-skill=DIR, or "
            "--upskill-cases=FILE beside a skill's SKILL.md"
        )
    if settings.get("skill_mode") == "disclose" and settings.get("turns", 1) == 1:
        raise pytest.UsageError(
            "--upskill-skill-mode=disclose needs --upskill-turns above 1: the model reads a "
            "disclosed skill in a turn of its own"
        )
    if settings.get("turns", 1) > 1 and settings.get("isolation") == "off":
        raise pytest.UsageError(
            "--upskill-turns above 1 needs --upskill-isolation=sandbox or process: each turn's "
            "kernel runs in a process of its own"
        )
    settings.setdefault("cassette_dir", config.rootpath / ".upskill" / "cassettes")
    try:
        return Settings(**settings)
    except ValidationError as exc:  # pragma: no cover - each value is checked above
        raise pytest.UsageError(f"upskill settings: {exc}") from None
