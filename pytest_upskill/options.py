"""Every option of the plugin, once: its command-line form, its ini twin, its help and how its
value is read. `add_options` makes pytest's options from this table and `config.load_settings`
reads them with it; `config.Settings` takes its defaults from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest

__all__ = ["OPTIONS", "Option", "add_options", "default_of"]

# How a value is read: see `config._read`.
Kind = Literal[
    "models",  # repeatable model specs
    "paths",  # repeatable paths
    "path",  # one path
    "whole",  # a whole number
    "number",  # a number
    "choice",  # one of `choices`, the first the default
    "names",  # repeatable environment variable names
    "prices",  # ini lines MODEL = INPUT OUTPUT
    "params",  # repeatable KEY=VALUE, VALUE as JSON where it is one
    "no-flag",  # a command-line flag that turns a true ini bool off
    "flag",  # an action, not a setting
    "shard",  # I/N
]


@dataclass(frozen=True)
class Option:
    """One option: `--upskill-NAME` and `upskill_NAME` (either may be absent), the Settings
    field it sets, and what a valid value is."""

    field: str | None  # in config.Settings; None: an action (`--upskill-sandbox-check`)
    cli: str | None
    ini: str | None
    help: str  # `{default}` is replaced by the Settings default
    kind: Kind
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    expected: str = ""  # for numbers: what the error message says a value must be
    valid: Callable[[float], bool] = lambda value: True
    optional: bool = False  # a number that may be left unset (None)
    default: float | None = None  # a number's default (a choice's is its first)
    ini_help: str = ""  # the ini twin's help, where it differs (a no-flag's ini is a bool)


_WHOLE = "a whole number of at least 1"


def _at_least_one(n: float) -> bool:
    return n >= 1


def _above_zero(n: float) -> bool:
    return n > 0


OPTIONS: tuple[Option, ...] = (
    Option("models", "--upskill-model", "upskill_models", "model to ask: oracle, "
           "anthropic:MODEL, openai:MODEL or openai:MODEL@BASE_URL (repeatable)", "models",
           "SPEC"),
    Option("skills", "--upskill-skill", "upskill_skills",
           "Agent Skills directory, one condition each (repeatable)", "paths", "DIR"),
    Option("baseline", "--upskill-no-baseline", "upskill_baseline",
           "drop the condition without a skill", "no-flag",
           ini_help="run the condition without a skill"),
    Option("cases", "--upskill-cases", "upskill_cases", "upskill test cases to run as tests: a "
           'tests file (a list, or {{"cases": [...]}}) or a skill_meta.json; the skill beside it '
           "is a condition (repeatable)", "paths", "PATH"),
    Option("skill_references", "--upskill-skill-references", "upskill_skill_references",
           "a skill's references/ files in the prompt: list (default; the content of those the "
           "task names is included) or inline (the content of all)", "choice",
           choices=("list", "inline")),
    Option("samples", "--upskill-samples", "upskill_samples",
           "samples per test, model and condition (default {default})", "whole", "N",
           expected=_WHOLE, valid=_at_least_one, default=1),
    Option("report", "--upskill-report", "upskill_report", "write the JSON report to PATH",
           "path", "PATH"),
    Option("build_dir", "--upskill-build-dir", "upskill_build_dir",
           "where built kernels are cached (default: ~/.cache/pytest-upskill/builds)", "path",
           "DIR"),
    Option("precompiled_headers", "--upskill-no-precompiled-headers",
           "upskill_precompiled_headers", "compile every source against torch's headers as "
           "they are, not their precompiled form (made once per toolchain beside the builds: "
           "0.1-0.7 GB each)", "no-flag",
           ini_help="compile a source that starts with a torch header against its precompiled "
           "form, made once per toolchain beside the builds"),
    Option("build_jobs", "--upskill-build-jobs", "upskill_build_jobs", "compiler jobs for "
           "builds that start when their reply arrives, before pytest reaches their test, "
           "shared by xdist workers (default: MAX_JOBS where it is set, else this machine's "
           "cores; 0: build each sample when "
           "its test runs)", "whole", "N", expected="a whole number (0: no builds ahead)",
           valid=lambda n: n >= 0, optional=True),
    Option("binding", "--upskill-binding", "upskill_binding", "kernel-builder (default): refuse "
           "torch/extension.h, pybind11 and hard-coded op namespaces at stage policy, as "
           "kernel-builder does; any: build such projects too", "choice",
           choices=("kernel-builder", "any")),
    Option("timeout_s", "--upskill-timeout", "upskill_timeout", "longest a kernel's build, its "
           "load and its test may each take (default {default})", "number", "SECONDS",
           expected="a number of seconds above 0", valid=_above_zero, default=900.0),
    Option("isolation", "--upskill-isolation", "upskill_isolation", "where builds and kernels "
           "run: sandbox (default) = bubblewrap or Landlock, with no network, no secrets, reads "
           "only of the toolchain and your tests, writes only in each sample's folder; process "
           "= a child process without secrets, unsandboxed; off = in the pytest process, as "
           "--pdb and --trace imply (a crash ends the session)", "choice",
           choices=("sandbox", "process", "off")),
    Option("pass_env", "--upskill-pass-env", "upskill_pass_env", "an environment variable the "
           "sandboxed builds and tests get besides the allow-list (repeatable)", "names",
           "NAME"),
    Option(None, "--upskill-sandbox-check", None, "run probes in the sandbox and print which "
           "protections hold on this machine", "flag"),
    Option("memory_limit_gb", "--upskill-memory-limit", "upskill_memory_limit", "most memory "
           "the process testing a kernel (or an agent CLI) may use, GiB (default: half of this "
           "machine's)",
           "number", "GIB", expected="a number of GiB above 0", valid=_above_zero,
           optional=True),
    Option("disk_limit_gb", "--upskill-disk-limit", "upskill_disk_limit", "most a kernel's "
           "test (or an agent CLI) may write in its sample's folder, GiB (default {default})",
           "number", "GIB",
           expected="a number of GiB above 0", valid=_above_zero, default=4.0),
    Option("record", "--upskill-record", "upskill_record", "cassettes: none = replay only, new "
           "= replay and record what is missing (default), all = re-record, off = neither",
           "choice", choices=("new", "none", "all", "off")),
    Option("cassette_dir", "--upskill-cassette-dir", "upskill_cassette_dir", "where replies "
           "are recorded (default: .upskill/cassettes under the rootdir)", "path", "DIR"),
    Option("concurrency", "--upskill-concurrency", "upskill_concurrency",
           "model requests in flight per process (default {default})", "whole", "N",
           expected=_WHOLE, valid=_at_least_one, default=8),
    Option("temperature", "--upskill-temperature", "upskill_temperature",
           "sampling temperature sent to the models (default: each provider's own)", "number",
           "T", expected="a number from 0 to 2", valid=lambda t: 0 <= t <= 2, optional=True),
    Option("max_tokens", "--upskill-max-tokens", "upskill_max_tokens",
           "longest reply a model may write, in tokens (default {default})", "whole", "N",
           expected=_WHOLE, valid=_at_least_one, default=16384),
    Option("request_timeout_s", "--upskill-request-timeout", "upskill_request_timeout",
           "longest one model request may take, each retry its own (default {default}); a "
           "request queued on a busy server counts its wait", "number", "SECONDS",
           expected="a number of seconds above 0", valid=_above_zero, default=600.0),
    Option("model_params", "--upskill-model-param", "upskill_model_params",
           "a parameter sent with every model request, KEY=VALUE, VALUE read as JSON where it "
           'is one (seed=1, top_p=0.9, stop=["</s>"]); part of the cassette key (repeatable)',
           "params", "KEY=VALUE"),
    Option("turns", "--upskill-turns", "upskill_turns", "model turns a sample may take (default "
           "{default}: one reply); above 1, an agent loop that ends at the first pass: the "
           "model sees what its project did and tries again", "whole", "N", expected=_WHOLE,
           valid=_at_least_one, default=1),
    Option("agent", "--upskill-agent", "upskill_agent", "how the loop talks to the model: auto "
           "(default: tools where the provider calls tools, else feedback), tools (file, build "
           "and test tools through the SDK's tool calling) or feedback (each turn a reply in the "
           "reply format, the next message says what happened)", "choice",
           choices=("auto", "tools", "feedback")),
    Option("skill_mode", "--upskill-skill-mode", "upskill_skill_mode", "how a skill reaches the "
           "model: preload (default: all of SKILL.md in the system prompt) or disclose (its name "
           "and description; the model reads its files when it decides to)", "choice",
           choices=("preload", "disclose")),
    Option("max_total_tokens", "--upskill-max-total-tokens", "upskill_max_total_tokens",
           "most tokens (input and output, all turns) a sample may spend; reaching it ends the "
           "sample as failed, naming the limit", "whole", "N", expected=_WHOLE,
           valid=_at_least_one, optional=True),
    Option("max_sample_s", "--upskill-max-sample-time", "upskill_max_sample_time", "longest "
           "an agent loop's sample may take, all turns, builds and tests together (an agent "
           "CLI's run: default --upskill-timeout); reaching it ends the sample as failed, "
           "naming the limit", "number", "SECONDS",
           expected="a number of seconds above 0", valid=_above_zero, optional=True),
    Option("max_cost_usd", "--upskill-max-cost", "upskill_max_cost", "most an agent loop's "
           "sample may cost, USD, where the model's price is known; reaching it ends the sample "
           "as failed, naming the limit", "number", "USD", expected="a price above 0",
           valid=_above_zero, optional=True),
    Option("prices", None, "upskill_prices", "model prices, one per line: MODEL = INPUT OUTPUT "
           "(USD per million tokens)", "prices"),
    Option("markdown", "--upskill-markdown", "upskill_markdown",
           "write the summary as Markdown (for $GITHUB_STEP_SUMMARY) to PATH", "path", "PATH"),
    Option("html", "--upskill-html", "upskill_html",
           "write a self-contained HTML report (chart, tables, every sample) to PATH", "path",
           "PATH"),
    Option("fail_under", "--upskill-fail-under", "upskill_fail_under",
           "fail the session if a skill condition's pass rate (its point estimate) is under "
           "RATE (0 to 1), or if it counted no sample", "number",
           "RATE", expected="a pass rate from 0 to 1", valid=lambda r: 0 <= r <= 1,
           optional=True),
    Option("min_lift", "--upskill-min-lift", "upskill_min_lift",
           "fail the session unless the lower bound of the 95% interval of each skill's lift "
           "reaches DELTA (-1 to 1)", "number",
           "DELTA", expected="a difference from -1 to 1", valid=lambda d: -1 <= d <= 1,
           optional=True),
    Option("shard", "--upskill-shard", "upskill_shard",
           "run shard I of N (1 to N): a deterministic, balanced share of the samples, for a "
           "CI matrix; merge the shards' reports with python -m pytest_upskill merge", "shard",
           "I/N"),
    Option("resume", "--upskill-resume", "upskill_resume",
           "go on with the campaign of REPORT (a JSON report of an interrupted run): skip its "
           "samples that passed or failed and merge them into this run's reports", "path",
           "REPORT"),
)  # fmt: skip

_INI_TYPES: dict[Kind, Literal["linelist", "paths", "bool", "string"]] = {
    "models": "linelist",
    "paths": "paths",
    "names": "linelist",
    "prices": "linelist",
    "params": "linelist",
    "no-flag": "bool",
}


def default_of(field: str) -> Any:
    """The default of a Settings field that an option sets: a number's, or a choice's first."""
    option = next(option for option in OPTIONS if option.field == field)
    return option.default if option.default is not None else option.choices[0]


def help_text(option: Option) -> str:
    """The option's help, with its default where it says `{default}`."""
    return option.help.format(default=f"{option.default:g}" if option.default else "")


def add_options(parser: pytest.Parser) -> None:
    """The command-line options and ini values of `OPTIONS`."""
    group = parser.getgroup("upskill", "pytest-upskill: measure agent skills on real kernels")
    for option in OPTIONS:
        text = help_text(option)
        if option.cli is not None:
            if option.kind in ("flag", "no-flag"):
                group.addoption(
                    option.cli, action="store_true", default=False, help=text.replace("%", "%%")
                )
            else:
                repeat = option.kind in ("models", "paths", "names", "params")
                group.addoption(
                    option.cli,
                    action="append" if repeat else "store",
                    metavar=option.metavar,
                    choices=option.choices or None,
                    help=text.replace("%", "%%"),  # argparse formats help with %
                )
        if option.ini is not None:
            ini_type = _INI_TYPES.get(option.kind, "string")
            default: object = {"linelist": [], "paths": [], "bool": True}.get(ini_type, "")
            parser.addini(option.ini, option.ini_help or text, type=ini_type, default=default)
