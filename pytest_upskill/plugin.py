"""pytest hooks of pytest-upskill: options, marker, parametrization, fixtures, summary.

This module imports nothing heavy: a session that asks for no model pays almost nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .keys import build_dir_key, runner_key, sample_key, session_key
from .options import add_options
from .paths import configured_path, default_build_dir

if TYPE_CHECKING:
    from collections.abc import Generator

    from .report.results import Outcome
    from .sample import Sample, SampleParams

__all__ = ["NO_MODEL_REASON"]

NO_MODEL_REASON = "no upskill model configured: pass --upskill-model=SPEC (oracle needs no key)"
MARKER_HELP = (
    "upskill(task, name=None, backend='cuda', capability='9.0a', reference=None, binding=None, "
    "forbid=(), forbid_ops=(), require_launch=True): ask the configured models for a kernel "
    "doing `task` (text or a .md path); the test gets it as `kernel`; `forbid`: patterns its "
    "sources must not hold; `forbid_ops`: regular expressions over ATen operator names "
    "(aten::_softmax) that must not run in its calls from check.assert_correct and check.speedup"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


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
        from .session.records import RecordKeeper
        from .session.samples import SampleRunner
        from .session.state import Session

        upskill = Session.from_config(config)
        upskill.open()
        config.stash[session_key] = upskill
        runner = config.stash[runner_key] = SampleRunner(upskill)
        config.pluginmanager.register(runner, "upskill-samples")
        keeper = RecordKeeper(upskill) if upskill.owner else None
        if keeper is not None:
            config.pluginmanager.register(keeper, "upskill-records")
        settings = upskill.settings
        if (settings.shard or settings.resume) and not upskill.child:
            from .session.campaign import Campaign

            campaign = Campaign(upskill)
            config.pluginmanager.register(campaign, "upskill-campaign")
            if keeper is not None:
                keeper.resumed = campaign.records
        # Cases files named by option are collected even outside the paths pytest was given.
        given = [config.invocation_params.dir / arg.partition("::")[0] for arg in config.args]
        for path in upskill.settings.cases:
            if not any(path.is_relative_to(arg.absolute()) for arg in given):
                config.args.append(str(path))


def pytest_unconfigure(config: pytest.Config) -> None:
    runner = config.stash.get(runner_key, None)
    if runner is not None:
        runner.close()
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()


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
    metafunc.parametrize("_upskill_params", session.parameters(task))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = config.stash.get(session_key, None)
    if session is not None and session.settings.models:
        return
    skip = pytest.mark.skip(reason=NO_MODEL_REASON)
    for item in items:
        if item.get_closest_marker("upskill") is not None:
            item.add_marker(skip)


@pytest.fixture
def _upskill_params(request: pytest.FixtureRequest) -> SampleParams:
    params: SampleParams | None = getattr(request, "param", None)
    if params is None:
        pytest.fail(
            f"{request.node.name}: the kernel and upskill_sample fixtures are for tests marked "
            "@pytest.mark.upskill(...)",
            pytrace=False,
        )
    return params


@pytest.fixture
def upskill_sample(
    request: pytest.FixtureRequest,
    _upskill_params: SampleParams,
    tmp_path_factory: pytest.TempPathFactory,
) -> Sample:
    """What happened to this sample: model, condition, index, reply, usage, files, build log."""
    runner = request.config.stash[runner_key]
    # Prepared before the test when its kernel runs in a child process (and in that child).
    sample: Sample | None = request.node.stash.get(sample_key, None)
    if sample is None:
        sample = runner.start(request.node, _upskill_params, tmp_path_factory)
        request.node.stash[sample_key] = sample
    sample.raise_for_setup()
    return sample


@pytest.fixture
def kernel(request: pytest.FixtureRequest, upskill_sample: Sample) -> Generator[Any]:
    """The model's kernel for this sample, built and imported (its package's `__init__`)."""
    runner = request.config.stash[runner_key]
    module = runner.kernel(upskill_sample)
    upskill_sample.raise_for_setup()
    # The test runs the kernel: one test per GPU; check.speedup records on the active sample.
    with runner.hold_device(upskill_sample), upskill_sample.active():
        yield module


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
    message = ""
    if call.excinfo is not None:
        message = call.excinfo.exconly()
        if call.excinfo.errisinstance(pytest.fail.Exception):
            # pytest.fail's own label: other reasons (a stage's failure, an assertion) have none.
            message = message.removeprefix("Failed: ")
    # A failing setup is the harness's or a fixture's fault, never the model's.
    return ("error" if report.when == "setup" else "failed"), message


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)
