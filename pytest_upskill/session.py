"""The state of an upskill session: settings, skills, providers and the records gathered."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .config import BASELINE, Settings, load_settings
from .errors import SampleError, UpskillIssue
from .generate.cassettes import Cassettes
from .generate.prices import cost_usd
from .generate.prompt import build_prompt
from .generate.providers import Request
from .generate.replies import Replies
from .report import (
    summary_table,
    write_html_report,
    write_json_report,
    write_markdown_report,
)
from .report.results import SampleRecord, Statistics, gate_failures, statistics
from .run.gpu import pin_worker_gpu
from .run.reports import crash_reports, result_reports
from .sample import Case, Sample, directory_name
from .skill import Skill, SkillInvalid, condition_name, load_skill
from .task import Task, TaskInvalid, task_from_marker

if TYPE_CHECKING:
    from .run.kernels import KernelProcess
    from .run.sandbox import Mechanism

__all__ = ["UpskillSession"]

_RECORD_WORDS = {
    "none": "replayed from cassettes only",
    "new": "replayed from cassettes, the missing ones recorded",
    "all": "asked again and recorded",
    "off": "asked for, not recorded",
}


_ISOLATION_WORDS = {
    "bubblewrap": "builds and kernels run in a sandbox (bubblewrap, then {inner}): no network, "
    "no secrets, no other processes, reads only of the toolchain and your tests, writes only "
    "in each sample's own folder",
    "landlock": "builds and kernels run in a sandbox ({inner}; bubblewrap is missing or refused "
    "here, so other processes are hidden by Landlock alone): no network, no secrets, reads only "
    "of the toolchain and your tests, writes only in each sample's own folder",
    "process": "kernels load and run in a child process without secrets; sandbox off "
    "(--upskill-isolation=process): builds and kernels may read and write wherever you can",
    "off": "kernels load and run in this pytest process (--upskill-isolation=off): a crash in "
    "one ends the session",
}
NO_SANDBOX = (
    "--upskill-isolation=sandbox: neither bubblewrap nor Landlock works here; install "
    "bubblewrap (apt-get install bubblewrap) or pass --upskill-isolation=process to run "
    "generated code without a sandbox"
)


def sandbox_words(how: Mechanism) -> str:
    """The header's line for the sandbox in force."""
    from .run.landlock import abi_version

    abi = abi_version()
    inner = f"Landlock ABI {abi}, seccomp" if abi else "seccomp; no Landlock on this kernel"
    return _ISOLATION_WORDS[how].format(inner=inner)


_isolated_key: pytest.StashKey[Case | None] = pytest.StashKey()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


class UpskillSession:
    """Created at configure time when upskill is asked for; lives on `config.stash`."""

    def __init__(
        self,
        settings: Settings,
        skills: list[Skill] | dict[str, Skill],
        workerinput: dict[str, Any] | None = None,
        *,
        child: bool = False,
    ) -> None:
        self.settings = settings
        self.conditions: dict[str, Skill | None] = {BASELINE: None} if settings.baseline else {}
        named = skills if isinstance(skills, dict) else {skill.name: skill for skill in skills}
        self.conditions.update(named)
        self.option_conditions = list(named)  # the --upskill-skill conditions, in order
        self.records: list[SampleRecord] = []
        self.stats: Statistics | None = None  # computed once, at the session's end
        self.gates: list[str] = []  # the CI gates the session missed
        self.workerinput = workerinput
        # A child session tests kernels its parent prepared: it asks no model and reports nothing.
        self.child = child
        # Where builds and kernels run: the strongest sandbox this machine offers.
        self.isolation = settings.isolation
        self.sandbox: Mechanism | None = None
        if self.isolation == "sandbox" and not child:
            from .run.sandbox import mechanism

            self.sandbox = mechanism()
            if self.sandbox is None:
                raise pytest.UsageError(NO_SANDBOX)
        self.kernels: KernelProcess | None = None
        # The controller (or a plain run) owns the session's start time and a scratch folder its
        # xdist workers share: locks on replies, and the replies themselves under record=off.
        if workerinput is None:
            self.since = time.time()
            self.scratch = Path(tempfile.mkdtemp(prefix="pytest-upskill-"))
        else:
            self.since = float(workerinput["upskill_since"])
            self.scratch = Path(workerinput["upskill_scratch"])
        off = settings.record == "off"
        store = Cassettes(
            self.scratch / "replies" if off else settings.cassette_dir, settings.record, self.since
        )
        self.replies = Replies(store, settings.concurrency, locks=self.scratch / "locks")
        self._prepared = False
        self._requests: dict[Case, Request] = {}
        self._sigterm: Any = None
        # SIGTERM (a CI runner's cancel) ends the session as Ctrl-C does: the samples that
        # finished still reach the reports.
        main = threading.current_thread() is threading.main_thread()
        if self.owner and main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._sigterm = signal.signal(signal.SIGTERM, _interrupt)

    @property
    def owner(self) -> bool:
        """A plain run or an xdist controller: it owns the scratch folder and writes reports."""
        return self.workerinput is None and not self.child

    @classmethod
    def from_config(cls, config: pytest.Config) -> UpskillSession:
        """Validate options and skills before any test runs; problems are UsageErrors."""
        from .plugin import child_key

        settings = load_settings(config)
        if config.option.usepdb or config.option.trace:  # a debugger needs this process's terminal
            settings = settings.model_copy(update={"isolation": "off"})
        child = config.stash.get(child_key, None)
        if child is not None:  # shares its parent's session as an xdist worker does
            return cls(settings, _load_skills(settings), child.upskill_input, child=True)
        worker = getattr(config, "workerinput", {}).get("workerid")
        if worker is not None:  # before collection: test modules may touch CUDA when imported
            pin_worker_gpu(worker)
        return cls(settings, _load_skills(settings), getattr(config, "workerinput", None))

    def task(self, marker: pytest.Mark, test_name: str, test_file: Path) -> Task:
        try:
            return task_from_marker(marker.args, dict(marker.kwargs), test_name, test_file)
        except TaskInvalid as exc:
            problem = f"{test_name}: {exc}"
        pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback

    def condition_of(self, skill: Skill) -> str:
        """The condition of a skill that owns upskill test cases: the --upskill-skill one of the
        same directory, else a new one (named by `condition_name`); SkillInvalid if none fits."""
        for name, known in self.conditions.items():
            if known is not None and known.path.resolve() == skill.path.resolve():
                return name
        taken = {name: known.path if known else None for name, known in self.conditions.items()}
        name = condition_name(skill, taken)
        self.conditions[name] = skill
        return name

    def parameters(self, task: Task) -> list[Any]:
        """models x conditions x samples; the oracle skips tasks that have no reference."""
        parameters = []
        # Skills that own upskill test cases are conditions of those cases only.
        conditions = [c for c in self.conditions if c == BASELINE or c in self.option_conditions]
        for model in self.settings.models:
            for condition in conditions:
                for index in range(self.settings.samples):
                    case = Case(model, condition, index, task)
                    marks = []
                    if model.provider == "oracle" and task.reference is None:
                        marks.append(
                            pytest.mark.skip(
                                reason="the oracle model needs a known-good project: "
                                "add reference='DIR' to the upskill marker"
                            )
                        )
                    parameters.append(pytest.param(case, id=case.id, marks=marks))
        return parameters

    def start(self, item: pytest.Item, case: Case, tmp: pytest.TempPathFactory) -> Sample:
        """A new sample for `item`, generated; a failure is kept on the sample, not raised."""
        test = getattr(item, "originalname", item.name)
        directory = tmp.mktemp(directory_name(test, case), numbered=True)
        sample = Sample(
            nodeid=item.nodeid,
            test=test,
            case=case,
            skill=self.conditions[case.condition],
            directory=directory,
            isolation=self.isolation,
        )
        try:
            sample.generate(self.replies, self.request(case))
        except UpskillIssue as issue:
            sample.issue = issue
        model = case.model
        sample.cost_usd = cost_usd(model.label, model.base_url, sample.usage, self.settings.prices)
        return sample

    def request(self, case: Case) -> Request:
        """What `case` asks its model: baseline and skill differ only by the skill block. Made
        once per case: at collection's end to prefetch, then when its test starts."""
        if case not in self._requests:
            self._requests[case] = Request(
                spec=case.model,
                prompt=build_prompt(
                    case.task, self.conditions[case.condition], self.settings.skill_references
                ),
                task=case.task,
                sample=case.index,
                temperature=self.settings.temperature if case.model.takes_temperature else None,
                max_tokens=self.settings.max_tokens,
            )
        return self._requests[case]

    @contextmanager
    def hold_device(self, sample: Sample) -> Iterator[None]:
        """Hold this process's GPU while a CUDA sample's test runs its kernel (never in the
        sandboxed test process: generated code takes no lock)."""
        cuda = getattr(sample.case.task, "backend", None) == "cuda"
        if not cuda or sample.issue is not None or self.child:
            yield  # no kernel will run here: the test fails at once with the sample's issue
            return
        import torch

        from .run.gpu import current_device, device_lock

        if not torch.cuda.is_available():
            yield  # the test skips: nothing to hold
            return
        try:
            with device_lock(current_device(), self.settings.timeout_s):
                yield  # pytest never throws the test's own exceptions into a fixture
        except UpskillIssue as issue:  # waiting for the GPU timed out
            sample.issue = issue
            raise

    def prepare(self, item: pytest.Item, case: Case) -> Sample:
        """A new sample for `item`, generated and built: all that runs no generated code."""
        sample = self.start(item, case, item.config._tmp_path_factory)  # type: ignore[attr-defined]
        if sample.issue is None:
            try:
                sample.make_project(self.settings, self.sandbox)
            except UpskillIssue as issue:
                sample.issue = issue
            except Exception as exc:  # outside the test's own phases: never an INTERNALERROR
                sample.issue = SampleError(
                    sample.stage, f"pytest-upskill failed: {type(exc).__name__}: {exc}"
                )
        return sample

    def kernel(self, sample: Sample) -> Any:
        """The sample's loaded kernel package, or None when a stage failed (kept on the sample)."""
        if sample.issue is not None:
            return None
        try:
            if sample.build is None:
                sample.make_project(self.settings, self.sandbox)
            return sample.load(self.settings)
        except UpskillIssue as issue:
            sample.issue = issue
            return None

    def _isolated_case(self, item: pytest.Item) -> Case | None:
        """The case of an item whose kernel must load and run in the child, else None. Asked
        at collection's end, for the item and for the item before it: worked out once."""
        if _isolated_key not in item.stash:
            item.stash[_isolated_key] = self._find_isolated_case(item)
        return item.stash[_isolated_key]

    def _find_isolated_case(self, item: pytest.Item) -> Case | None:
        if self.isolation == "off" or self.child:
            return None
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("_upskill_case") if callspec else None
        if not isinstance(case, Case) or "kernel" not in getattr(item, "fixturenames", ()):
            return None
        from _pytest.skipping import evaluate_skip_marks

        try:
            skipped = evaluate_skip_marks(item) is not None
        except Exception:  # a broken skipif: pytest reports it at setup, before any fixture
            return None
        return None if skipped else case

    def _kernel_process(self, config: pytest.Config) -> KernelProcess:
        if self.kernels is None:
            from .run.kernels import KernelProcess, memory_total_gib

            self.kernels = KernelProcess(
                config,
                self.settings,
                memory_limit_gib=self.settings.memory_limit_gb or memory_total_gib() / 2 or 64,
                sandbox=self.sandbox,
                upskill_input={"upskill_since": self.since, "upskill_scratch": str(self.scratch)},
            )
        return self.kernels

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        """Prepare an upskill sample here, then load and test its kernel in the child process."""
        case = self._isolated_case(item)
        if case is None:
            return None
        from .plugin import sample_key

        sample = item.stash[sample_key] = self.prepare(item, case)
        if sample.issue is not None:
            return None  # no generated code will run: the test fails here at once
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        from .run.kernels import Verdict

        try:
            with self.hold_device(sample):
                outcome = self._kernel_process(item.config).run(item, sample)
        except UpskillIssue as issue:  # waiting for the GPU timed out
            outcome = Verdict(issue.stage, issue.reason, harness=True)
        if isinstance(outcome, Verdict):
            reports = crash_reports(item, sample, outcome)
        else:
            reports = result_reports(item, sample, outcome)
        for report in reports:
            ihook.pytest_runtest_logreport(report=report)
        # This process ran none of the item's fixtures, but may hold earlier items' fixtures
        # (module, session) that the next item does not need: their teardown is this item's.
        call = pytest.CallInfo.from_call(
            lambda: item.session._setupstate.teardown_exact(nextitem), when="teardown"
        )
        if call.excinfo is not None:
            ihook.pytest_runtest_logreport(report=pytest.TestReport.from_item_and_call(item, call))
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    # Hooks: this object is registered as a plugin for the session.

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        settings = self.settings
        if self.child:
            return []
        lines = [
            f"upskill: models {', '.join(str(m) for m in settings.models) or 'none'}; "
            f"conditions {', '.join(self.conditions)}; {settings.samples} sample(s) each",
            "upskill: "
            + (sandbox_words(self.sandbox) if self.sandbox else _ISOLATION_WORDS[self.isolation]),
        ]
        if any(model.provider != "oracle" for model in settings.models):  # the oracle records none
            where = "" if settings.record == "off" else f" ({settings.cassette_dir})"
            lines.append(f"upskill: replies {_RECORD_WORDS[settings.record]}{where}")
        if settings.temperature is not None:
            ignored = [m.label for m in settings.models if not m.takes_temperature]
            if ignored:
                lines.append(f"upskill: {', '.join(ignored)} take no temperature: none is sent")
        if settings.record != "none":
            for model in settings.models:
                missing = self.replies.provider(model).missing_key()
                if missing is not None:
                    lines.append(
                        f"upskill: {model.label}: {missing}; its samples without a recorded "
                        "reply end as errors"
                    )
        return lines

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist, on the controller: workers share the session's start and scratch folder."""
        node.workerinput["upskill_since"] = self.since
        node.workerinput["upskill_scratch"] = str(self.scratch)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """xdist, on the controller: a sample whose test took its worker down (generated code
        can segfault) still gets a record, so the report stays complete."""
        test, _, params = crashitem.rpartition("::")[2].partition("[")
        pieces = f"-{params.removesuffix(']')}-"
        for model in self.settings.models:
            for condition in self.conditions:
                for index in range(self.settings.samples):
                    if f"-{model.label}-{condition}-{index}-" not in pieces:
                        continue
                    record = SampleRecord(
                        nodeid=crashitem,
                        test=test,
                        model=model.label,
                        condition=condition,
                        sample=index,
                        outcome="failed",
                        stage="check",
                        reason="the xdist worker died while running this sample (a crash in "
                        "the kernel or the test)",
                    )
                    report.upskill_sample = record.model_dump(mode="json")  # type: ignore[attr-defined]
                    return

    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        """Make the SDK clients while pytest collects, in the processes that will ask models:
        a plain run or an xdist worker, never an xdist controller (it collects nothing)."""
        if not self._prepared and not self.child and not collector.config.option.collectonly:
            self._prepared = True
            self.replies.prepare(self.settings.models)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Start asking for the replies this process's items need, before the first test."""
        if session.config.option.collectonly or self.child:
            return
        requests = []
        for item in session.items:
            callspec = getattr(item, "callspec", None)
            case = callspec.params.get("_upskill_case") if callspec else None
            case = case or getattr(item, "upskill_case", None)  # an upskill test case's item
            if isinstance(case, Case) and item.get_closest_marker("skip") is None:
                requests.append(self.request(case))
        if any(self._isolated_case(item) for item in session.items):
            self._kernel_process(session.config).start()  # it collects while models answer
        worker, workers = 0, 1
        if self.workerinput is not None:
            worker = int(str(self.workerinput["workerid"]).removeprefix("gw"))
            workers = int(self.workerinput["workercount"])
        pending = self.replies.prefetch(requests, worker, workers)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if pending and reporter is not None and self.workerinput is None:
            reporter.write_line(
                f"upskill: asking the models for {pending} replies, "
                f"{self.settings.concurrency} at a time"
            )

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
        self.replies.close()
        if self.kernels is not None:
            self.kernels.close()
        if self.workerinput is None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "upskill_sample", None)
        if data is not None:
            self.records.append(SampleRecord.model_validate(data))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.workerinput is not None:
            return  # the controller has every record: it reports once
        settings = self.settings
        stats = self.stats = statistics(self.records)
        self.gates = gate_failures(
            stats.summary, settings.fail_under, settings.min_lift, lifts=stats.lift
        )
        if self.gates and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if settings.report is not None:
            write_json_report(settings.report, stats)
        if settings.markdown is not None:
            write_markdown_report(settings.markdown, stats, self.gates)
        if settings.html is not None:
            write_html_report(settings.html, stats, self.gates)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.stats is None or not self.stats.records:
            return
        terminalreporter.write_sep("=", "upskill summary")
        verbose = terminalreporter.config.get_verbosity() > 0
        for line in summary_table(self.stats, verbose=verbose):
            terminalreporter.write_line(line)
        if self.settings.report is not None:
            terminalreporter.write_line(f"upskill report: {self.settings.report}")
        if self.settings.markdown is not None:
            terminalreporter.write_line(f"upskill markdown: {self.settings.markdown}")
        if self.settings.html is not None:
            terminalreporter.write_line(f"upskill html: {self.settings.html}")
        for gate in self.gates:
            terminalreporter.write_line(f"upskill gate failed: {gate}", red=True)


def _load_skills(settings: Settings) -> dict[str, Skill]:
    """The skills of the session by condition name; problems are UsageErrors."""
    try:
        skills = [load_skill(path) for path in settings.skills]
    except SkillInvalid as exc:
        raise pytest.UsageError(f"--upskill-skill: {exc}") from None
    named: dict[str, Skill] = {}
    for skill in skills:
        # Skills that share a name (versions of one skill) are all named name@FOLDER.
        shared = sum(other.name == skill.name for other in skills) > 1
        taken = {BASELINE: None, **{n: s.path for n, s in named.items()}}
        if shared:
            taken[skill.name] = None
        try:
            named[condition_name(skill, taken)] = skill
        except SkillInvalid as exc:
            raise pytest.UsageError(f"--upskill-skill: {exc}") from None
    return named
