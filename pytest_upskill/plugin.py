"""pytest hooks of pytest-upskill: options, marker, parametrization, fixtures, summary.

This module imports nothing heavy: a session that asks for no model pays almost nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .paths import configured_path, default_build_dir

if TYPE_CHECKING:
    from collections.abc import Generator

    from .report.results import Outcome
    from .run.child import ChildServer
    from .sample import Case, Sample
    from .session import UpskillSession

__all__ = ["NO_MODEL_REASON"]

NO_MODEL_REASON = "no upskill model configured: pass --upskill-model=SPEC (oracle needs no key)"
MARKER_HELP = (
    "upskill(task, name=None, backend='cuda', capability='9.0a', reference=None, binding=None, "
    "forbid=(), require_launch=True): ask the configured models for a kernel doing `task` (text "
    "or a .md path); the test gets it as `kernel`; `forbid`: patterns its sources must not hold"
)

session_key: pytest.StashKey[UpskillSession] = pytest.StashKey()
sample_key: pytest.StashKey[Sample] = pytest.StashKey()
build_dir_key: pytest.StashKey[Path] = pytest.StashKey()
child_key: pytest.StashKey[ChildServer] = pytest.StashKey()  # set in a kernel-testing child


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("upskill", "pytest-upskill: measure agent skills on real kernels")
    group.addoption(
        "--upskill-model",
        action="append",
        metavar="SPEC",
        help="model to ask: oracle, anthropic:MODEL, openai:MODEL or openai:MODEL@BASE_URL "
        "(repeatable)",
    )
    group.addoption(
        "--upskill-skill",
        action="append",
        metavar="DIR",
        help="Agent Skills directory, one condition each (repeatable)",
    )
    group.addoption(
        "--upskill-no-baseline",
        action="store_true",
        default=False,
        help="drop the condition without a skill",
    )
    group.addoption(
        "--upskill-cases",
        action="append",
        metavar="PATH",
        help='upskill test cases to run as tests: a tests file (a list, or {"cases": [...]}) '
        "or a skill_meta.json; the skill beside it is a condition (repeatable)",
    )
    group.addoption(
        "--upskill-skill-references",
        choices=("list", "inline"),
        help="a skill's references/ files in the prompt: list (default; the content of those "
        "the task names is included) or inline (the content of all)",
    )
    group.addoption("--upskill-samples", metavar="N", help="samples per test, model and condition")
    group.addoption("--upskill-report", metavar="PATH", help="write the JSON report to PATH")
    group.addoption(
        "--upskill-build-dir",
        metavar="DIR",
        help="where built kernels are cached (default: ~/.cache/pytest-upskill/builds)",
    )
    group.addoption(
        "--upskill-binding",
        choices=("kernel-builder", "any"),
        help="kernel-builder (default): refuse torch/extension.h, pybind11 and hard-coded op "
        "namespaces at stage policy, as kernel-builder does; any: build such projects too",
    )
    group.addoption(
        "--upskill-timeout",
        metavar="SECONDS",
        help="longest a kernel's build, its load and its test may each take (default 900)",
    )
    group.addoption(
        "--upskill-isolation",
        choices=("sandbox", "process", "off"),
        help="where builds and kernels run: sandbox (default) = bubblewrap or Landlock, with no "
        "network, no secrets, reads only of the toolchain and your tests, writes only in each "
        "sample's folder; process = a child process without secrets, unsandboxed; off = in the "
        "pytest process, as --pdb and --trace imply (a crash ends the session)",
    )
    group.addoption(
        "--upskill-pass-env",
        action="append",
        metavar="NAME",
        help="an environment variable the sandboxed builds and tests get besides the "
        "allow-list (repeatable)",
    )
    group.addoption(
        "--upskill-sandbox-check",
        action="store_true",
        default=False,
        help="run probes in the sandbox and print which protections hold on this machine",
    )
    group.addoption(
        "--upskill-memory-limit",
        metavar="GIB",
        help="most memory the process testing a kernel may use (default: half of this machine's)",
    )
    group.addoption(
        "--upskill-disk-limit",
        metavar="GIB",
        help="most a kernel's test may write in its sample's folder (default: 4)",
    )
    group.addoption(
        "--upskill-record",
        choices=("none", "new", "all", "off"),
        help="cassettes: none = replay only, new = replay and record what is missing (default), "
        "all = re-record, off = neither",
    )
    group.addoption(
        "--upskill-cassette-dir",
        metavar="DIR",
        help="where replies are recorded (default: .upskill/cassettes under the rootdir)",
    )
    group.addoption(
        "--upskill-concurrency",
        metavar="N",
        help="model requests in flight per process (default 8)",
    )
    group.addoption(
        "--upskill-temperature",
        metavar="T",
        help="sampling temperature sent to the models (default: each provider's own)",
    )
    group.addoption(
        "--upskill-max-tokens",
        metavar="N",
        help="longest reply a model may write, in tokens (default 16384)",
    )
    group.addoption(
        "--upskill-markdown",
        metavar="PATH",
        help="write the summary as Markdown (for $GITHUB_STEP_SUMMARY) to PATH",
    )
    group.addoption(
        "--upskill-html",
        metavar="PATH",
        help="write a self-contained HTML report (chart, tables, every sample) to PATH",
    )
    group.addoption(
        "--upskill-fail-under",
        metavar="RATE",
        help="fail the session if a skill condition's pass rate is under RATE (0 to 1)",
    )
    group.addoption(
        "--upskill-min-lift",
        metavar="DELTA",
        help="fail the session if a skill lifts a model's pass rate by less than DELTA",
    )
    parser.addini("upskill_models", "models to ask, one per line", type="linelist", default=[])
    parser.addini("upskill_skills", "Agent Skills directories", type="paths", default=[])
    parser.addini(
        "upskill_baseline", "run the condition without a skill", type="bool", default=True
    )
    parser.addini(
        "upskill_cases", "upskill test case files to run as tests", type="paths", default=[]
    )
    parser.addini(
        "upskill_skill_references", "references/ files in the prompt: list or inline", default=""
    )
    parser.addini("upskill_samples", "samples per test, model and condition", default="1")
    parser.addini("upskill_report", "path of the JSON report", default="")
    parser.addini("upskill_build_dir", "where built kernels are cached", default="")
    parser.addini("upskill_binding", "kernel-builder (default) or any", default="")
    parser.addini("upskill_record", "cassettes: none, new (default), all or off", default="")
    parser.addini("upskill_cassette_dir", "where replies are recorded", default="")
    parser.addini("upskill_concurrency", "model requests in flight per process", default="")
    parser.addini("upskill_temperature", "sampling temperature sent to the models", default="")
    parser.addini("upskill_max_tokens", "longest reply a model may write", default="")
    parser.addini(
        "upskill_prices",
        "model prices, one per line: MODEL = INPUT OUTPUT (USD per million tokens)",
        type="linelist",
        default=[],
    )
    parser.addini("upskill_markdown", "path of the Markdown summary", default="")
    parser.addini("upskill_html", "path of the HTML report", default="")
    parser.addini("upskill_fail_under", "lowest pass rate a skill condition may have", default="")
    parser.addini("upskill_min_lift", "smallest lift a skill may have", default="")
    parser.addini(
        "upskill_timeout", "longest a build, load or test of a kernel may take", default=""
    )
    parser.addini("upskill_isolation", "sandbox (default), process or off", default="")
    parser.addini("upskill_memory_limit", "most memory a kernel's test may use, GiB", default="")
    parser.addini(
        "upskill_disk_limit", "most a kernel's test may write in its folder, GiB", default=""
    )
    parser.addini(
        "upskill_pass_env",
        "environment variables sandboxed builds and tests get besides the allow-list",
        type="linelist",
        default=[],
    )


def _wanted(config: pytest.Config) -> bool:
    option = config.option
    return bool(
        option.upskill_model
        or option.upskill_skill
        or option.upskill_cases
        or option.upskill_report
        or option.upskill_markdown
        or option.upskill_html
        or config.getini("upskill_models")
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    build_dir = configured_path(config, "upskill_build_dir", "upskill_build_dir")
    config.stash[build_dir_key] = (build_dir or default_build_dir()).absolute()
    if _wanted(config):
        from .session import UpskillSession

        upskill = UpskillSession.from_config(config)
        config.stash[session_key] = upskill
        config.pluginmanager.register(upskill, "upskill-session")
        # Cases files named by option are collected even outside the paths pytest was given.
        given = [config.invocation_params.dir / arg.partition("::")[0] for arg in config.args]
        for path in upskill.settings.cases:
            if not any(path.is_relative_to(arg.absolute()) for arg in given):
                config.args.append(str(path))


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.option.upskill_sandbox_check:
        from .run.selfcheck import sandbox_check

        return sandbox_check(config)
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # Built projects hold the model's files, test files included: never collect them.
    build_dir = config.stash.get(build_dir_key, None)
    if build_dir is not None and collection_path.is_relative_to(build_dir):
        return True
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """upskill's test cases (a skill_meta.json, or a file named by --upskill-cases) as items."""
    session = parent.config.stash.get(session_key, None)
    named = session.settings.cases if session is not None else ()
    if file_path.name != "skill_meta.json" and file_path.absolute() not in named:
        return None
    from .cases import CasesFile

    return CasesFile.from_parent(parent, path=file_path)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("upskill")
    session = metafunc.config.stash.get(session_key, None)
    if marker is None or session is None or not session.settings.models:
        return
    name = metafunc.definition.originalname
    if not {"kernel", "upskill_sample"} & set(metafunc.fixturenames):
        pytest.fail(
            f"{name}: a test marked upskill must ask for the `kernel` or `upskill_sample` fixture",
            pytrace=False,
        )
    task = session.task(marker, name, metafunc.definition.path)
    metafunc.parametrize("_upskill_case", session.parameters(task))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = config.stash.get(session_key, None)
    if session is not None and session.settings.models:
        return
    skip = pytest.mark.skip(reason=NO_MODEL_REASON)
    for item in items:
        if item.get_closest_marker("upskill") is not None:
            item.add_marker(skip)


@pytest.fixture
def _upskill_case(request: pytest.FixtureRequest) -> Case:
    case: Case | None = getattr(request, "param", None)
    if case is None:
        pytest.fail(
            f"{request.node.name}: the kernel and upskill_sample fixtures are for tests marked "
            "@pytest.mark.upskill(...)",
            pytrace=False,
        )
    return case


@pytest.fixture
def upskill_sample(
    request: pytest.FixtureRequest, _upskill_case: Case, tmp_path_factory: pytest.TempPathFactory
) -> Sample:
    """What happened to this sample: model, condition, index, reply, usage, files, build log."""
    session = request.config.stash[session_key]
    # Prepared before the test when its kernel runs in a child process (and in that child).
    sample: Sample | None = request.node.stash.get(sample_key, None)
    if sample is None:
        sample = session.start(request.node, _upskill_case, tmp_path_factory)
        request.node.stash[sample_key] = sample
    _raise_errors(sample)
    return sample


@pytest.fixture
def kernel(request: pytest.FixtureRequest, upskill_sample: Sample) -> Generator[Any]:
    """The model's kernel for this sample, built and imported (its package's `__init__`)."""
    session = request.config.stash[session_key]
    module = session.kernel(upskill_sample)
    _raise_errors(upskill_sample)
    # The test runs the kernel: one test per GPU; check.speedup records on the active sample.
    with session.hold_device(upskill_sample), upskill_sample.active():
        yield module


def _raise_errors(sample: Sample) -> None:
    # Harness errors end the test in setup (pytest's "error"), and what this machine cannot run
    # skips it there; model failures wait for the call, so pytest reports them as failures.
    if sample.issue is None:
        return
    if sample.issue.outcome == "skipped":
        pytest.skip(sample.issue.reason)
    if sample.issue.outcome == "error":
        raise sample.issue


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    sample = item.stash.get(sample_key, None)
    if sample is not None and sample.issue is not None:
        pytest.fail(str(sample.issue), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    sample = item.stash.get(sample_key, None)
    ends_sample = report.when == "call" or (report.when == "setup" and not report.passed)
    if sample is None or not ends_sample:
        return report
    from .errors import UpskillIssue
    from .run.reports import attach_record

    error = call.excinfo.value if call.excinfo else None
    if isinstance(error, UpskillIssue):
        report.longrepr = str(error)  # one line, never a traceback into the plugin
    outcome, reason = _outcome(report, call, sample)
    # JUnit XML properties: junitxml reads them from the teardown report, which copies these.
    attach_record(item, report, sample.record(outcome, reason.strip().partition("\n")[0]))
    return report


def _outcome(
    report: pytest.TestReport, call: pytest.CallInfo[None], sample: Sample
) -> tuple[Outcome, str]:
    if report.passed:
        return "passed", ""
    if report.skipped:
        return "skipped", _skip_reason(report)
    if sample.issue is not None:
        return sample.issue.outcome, sample.issue.reason
    message = call.excinfo.exconly() if call.excinfo else ""
    # A failing setup is the harness's or a fixture's fault, never the model's.
    return ("error" if report.when == "setup" else "failed"), message


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)
