"""The plugin object that runs samples: it asks the models while pytest collects, makes each
sample (generate, extract, build: `sample.Sample`), and runs each test whose kernel is
sandboxed in the child session (`run.kernels`), reading its reports back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from .. import __version__
from .._compat import skipped_by_marks, teardown_exact, tmp_path_factory
from ..agent import agent_mode
from ..errors import SampleError, UpskillIssue
from ..generate.prices import cost_usd
from ..keys import isolated_key, sample_key
from ..run.reports import crash_reports, result_reports
from ..sample import Sample, SampleParams, directory_name
from ..task import Task
from .ahead import BuildAhead
from .words import (
    ISOLATION_WORDS,
    RECORD_WORDS,
    agent_words,
    loop_words,
    sandbox_words,
    temperature_zero_or_seed,
)

if TYPE_CHECKING:
    from ..generate.replies import Replies
    from ..run.kernels import KernelProcess, Verdict
    from ..run.wire import Result
    from .state import Session

__all__ = ["SampleRunner"]


class SampleRunner:
    """Registered as a plugin at configure time, beside the session's state it reads."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.settings = session.settings
        self.kernels: KernelProcess | None = None
        self.ahead: BuildAhead | None = None
        self._prepared = False
        self._header_conditions: list[str] = []  # the conditions the header named
        # Each running xdist worker's host and place among that host's workers (for its GPU).
        self._places: dict[str, tuple[str, int]] = {}

    @property
    def replies(self) -> Replies:
        assert self.session.replies is not None, "the session is not open"
        return self.session.replies

    def start(self, item: pytest.Item, params: SampleParams, tmp: pytest.TempPathFactory) -> Sample:
        """A new sample for `item`, generated; a failure is kept on the sample, not raised."""
        test = getattr(item, "originalname", item.name)
        directory = tmp.mktemp(directory_name(test, params), numbered=True)
        sample = Sample(
            nodeid=item.nodeid,
            test=test,
            params=params,
            skill=self.session.conditions[params.condition],
            directory=directory,
            isolation=self.session.isolation,
            since=self.session.since,
        )
        try:
            sample.generate(self.replies, self.session.request(params))
        except UpskillIssue as issue:
            sample.issue = issue
        priced = cost_usd(params.model, sample.usage, self.settings.prices)
        sample.cost_usd = priced if priced is not None else sample.reported_cost_usd
        return sample

    @contextmanager
    def hold_device(self, sample: Sample) -> Iterator[None]:
        """Hold this process's GPU while a CUDA sample's test runs its kernel (never in the
        sandboxed test process: generated code takes no lock)."""
        cuda = getattr(sample.params.task, "backend", None) == "cuda"
        if not cuda or sample.issue is not None or self.session.child:
            yield  # no kernel will run here: the test fails at once with the sample's issue
            return
        import torch

        from ..run.gpu import current_device, device_lock

        if not torch.cuda.is_available():
            yield  # the test skips: nothing to hold
            return
        try:
            with device_lock(current_device(), self.settings.timeout_s):
                yield  # pytest never throws the test's own exceptions into a fixture
        except UpskillIssue as issue:  # waiting for the GPU timed out
            sample.issue = issue
            raise

    def prepare(self, item: pytest.Item, params: SampleParams) -> Sample:
        """A new sample for `item`, generated and built: all that runs no generated code."""
        sample = self.start(item, params, tmp_path_factory(item.config))
        if sample.issue is None:
            try:
                sample.make_project(self.settings, self.session.sandbox)
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
                if self.session.child:  # its parent builds: never a project from reply text here
                    raise SampleError("load", "the sample reached the test process unbuilt")
                sample.make_project(self.settings, self.session.sandbox)
            return sample.load(self.settings)
        except UpskillIssue as issue:
            sample.issue = issue
            return None

    def _isolated_params(self, item: pytest.Item) -> SampleParams | None:
        """The params of an item whose kernel must load and run in the child, else None. Asked
        at collection's end, for the item and for the item before it: worked out once."""
        if isolated_key not in item.stash:
            item.stash[isolated_key] = self._find_isolated_params(item)
        return item.stash[isolated_key]

    def _find_isolated_params(self, item: pytest.Item) -> SampleParams | None:
        if self.session.isolation == "off" or self.session.child:
            return None
        callspec = getattr(item, "callspec", None)
        params = callspec.params.get("_upskill_params") if callspec else None
        if not isinstance(params, SampleParams) or "kernel" not in getattr(
            item, "fixturenames", ()
        ):
            return None
        try:
            skipped = skipped_by_marks(item)
        except Exception:  # a broken skipif: pytest reports it at setup, before any fixture
            return None
        return None if skipped else params

    def _kernel_process(self, config: pytest.Config) -> KernelProcess:
        if self.kernels is None:
            from ..run.kernels import KernelProcess
            from ..run.processes import memory_total_gib

            session = self.session
            self.kernels = KernelProcess(
                config,
                self.settings,
                memory_limit_gib=self.settings.memory_limit_gb or memory_total_gib() / 2 or 64,
                sandbox=session.sandbox,
                upskill_input={"upskill_since": session.since},
            )
        return self.kernels

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
        if self.kernels is not None:
            self.kernels.close()

    # Hooks

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        """Prepare an upskill sample here, then load and test its kernel in the child process."""
        params = self._isolated_params(item)
        if params is None:
            return None
        mode = agent_mode(self.settings, params.model, isinstance(params.task, Task))
        if mode:  # an agent loop builds each turn itself
            sample = self.start(item, params, tmp_path_factory(item.config))
            sample.agent, sample.skill_mode = mode, self.settings.skill_mode
        else:
            sample = self.prepare(item, params)
        item.stash[sample_key] = sample
        if sample.issue is not None and not mode:
            return None  # no generated code will run: the test fails here at once
        from ..run.kernels import Verdict

        def run_kernel() -> Result | Verdict:
            try:
                with self.hold_device(sample):  # only while the kernel runs, not the model
                    return self._kernel_process(item.config).run(item, sample)
            except UpskillIssue as issue:  # waiting for the GPU timed out
                return Verdict(issue.stage, issue.reason, harness=True)

        if mode:
            outcome: Result | Verdict | None = self._loop(sample, mode, run_kernel)
            if outcome is None:
                return None  # the last turn ended before its kernel ran: its issue fails the test
        else:
            outcome = run_kernel()
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        if isinstance(outcome, Verdict):
            reports = crash_reports(item, sample, outcome)
        else:
            reports = result_reports(item, sample, outcome)
        for report in reports:
            ihook.pytest_runtest_logreport(report=report)
        # This process ran none of the item's fixtures, but may hold earlier items' fixtures
        # (module, session) that the next item does not need: their teardown is this item's.
        call = pytest.CallInfo.from_call(lambda: teardown_exact(item, nextitem), when="teardown")
        if call.excinfo is not None:
            ihook.pytest_runtest_logreport(report=pytest.TestReport.from_item_and_call(item, call))
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _loop(
        self, sample: Sample, mode: str, run_kernel: Callable[[], Result | Verdict]
    ) -> Result | Verdict | None:
        """Run an agent loop on `sample`; whatever goes wrong in it is that sample's error."""
        from ..agent.loop import FeedbackLoop
        from ..agent.tool_loop import ToolLoop
        from ..run.kernels import Verdict

        def run_turn() -> Result | Verdict:
            outcome = run_kernel()
            # A skip raised while the test ran the kernel could be the kernel's own, ending a
            # failing loop outside every rate: in a loop it is a failed turn.
            skipped = not isinstance(outcome, Verdict) and outcome.outcome == "skipped"
            if skipped and outcome.stage == "check":
                reason = outcome.reason.strip()[:300]
                return Verdict(
                    "check",
                    f"the test skipped ({reason}): in an agent loop a skip while the kernel "
                    "runs is a failure",
                )
            return outcome

        kind = ToolLoop if mode == "tools" else FeedbackLoop
        skill = sample.skill if self.settings.skill_mode == "disclose" else None
        loop = kind(sample, self.replies, self.settings, self.session.sandbox, run_turn, skill)
        try:
            return loop.run()
        except Exception as exc:  # never an INTERNALERROR: the loop's own bug is this sample's
            sample.issue = SampleError(
                sample.stage,
                f"pytest-upskill failed in the agent loop: {type(exc).__name__}: {exc}",
            )
            return None

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        session, settings = self.session, self.settings
        if session.child:
            return []
        where = (
            sandbox_words(session.sandbox)
            if session.sandbox
            else ISOLATION_WORDS[session.isolation]
        )
        self._header_conditions = list(session.conditions)
        lines = [
            f"upskill: models {', '.join(str(m) for m in settings.models) or 'none'}; "
            f"conditions {', '.join(session.conditions)}; {settings.samples} sample(s) each",
            f"upskill: {where}",
        ]
        if any(model.provider != "oracle" for model in settings.models):  # the oracle records none
            folder = "" if settings.record == "off" else f" ({settings.cassette_dir})"
            lines.append(f"upskill: replies {RECORD_WORDS[settings.record]}{folder}")
        if settings.temperature is not None:
            ignored = [m.label for m in settings.models if not m.takes_temperature]
            if ignored:
                lines.append(f"upskill: {', '.join(ignored)} take no temperature: none is sent")
        if settings.turns > 1:
            lines.append(f"upskill: {loop_words(settings)}")
        for model in settings.models:
            if model.provider == "agent":
                from ..run.sandbox import mechanism

                lines.append(f"upskill: {agent_words(model, mechanism())}")
        if temperature_zero_or_seed(settings):
            lines.append(
                f"upskill: {'temperature 0' if settings.temperature == 0 else 'a seed'}: the "
                f"{settings.samples} samples of a test may repeat one reply; the report counts "
                "repeats"
            )
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
        """xdist, on the controller: what each worker, on this machine or another, shares with
        it: the session's start, the plugin and skills it must have, its place among the
        workers of its host (for its GPU), and the channel it asks for replies on."""
        session = self.session
        node.workerinput["upskill_since"] = session.since
        node.workerinput["upskill_version"] = __version__
        node.workerinput["upskill_skills"] = session.skill_digests()
        from ..run.gpu import worker_host

        host = worker_host(node.gateway.spec)
        taken = {place for (where, place) in self._places.values() if where == host}
        place = min(set(range(len(taken) + 1)) - taken)  # a restarted worker's, if one is free
        self._places[node.gateway.id] = (host, place)
        node.workerinput["upskill_host_worker"] = place
        session.relay().serve(node)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist, on the controller: a worker that refused the session (another plugin version,
        another skill) ends it, rather than being started again and again."""
        from .state import WORKER_REFUSED

        self._places.pop(node.gateway.id, None)  # its GPU is free for the worker after it
        text = str(error or "")
        if WORKER_REFUSED in text:
            why = text[text.index(WORKER_REFUSED) :].splitlines()[0]
            pytest.exit(why, returncode=pytest.ExitCode.USAGE_ERROR)

    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        """Make the SDK clients while pytest collects, in the processes that will ask models:
        a plain run or an xdist worker, never an xdist controller (it collects nothing)."""
        if (
            not self._prepared
            and not self.session.child
            and not collector.config.option.collectonly
        ):
            self._prepared = True
            self.replies.prepare(self.settings.models)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Ask each model's own server once, before the run, and say what is wrong (the xdist
        controller or a plain run: the process whose output the user reads)."""
        if self.session.owner and not session.config.option.collectonly:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            for line in self.replies.check_servers(self.settings.models):
                if reporter is not None:
                    reporter.write_line(f"upskill: {line}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        """No build ahead outlives the tests: the reports come next."""
        if self.ahead is not None:
            self.ahead.close()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Start asking for the replies this process's items need, before the first test."""
        if session.config.option.collectonly or self.session.child:
            return
        requests = []
        for item in session.items:
            params = SampleParams.of(item)
            if params is not None and item.get_closest_marker("skip") is None:
                requests.append(self.session.request(params))
        if any(self._isolated_params(item) for item in session.items):
            self._kernel_process(session.config).start()  # it collects while models answer
        worker, workers = 0, 1
        workerinput = self.session.workerinput
        if workerinput is not None:
            worker = int(str(workerinput["workerid"]).removeprefix("gw"))
            workers = int(workerinput["workercount"])
        self.replies.check_servers(self.settings.models)  # done once: the header printed it
        self.ahead = BuildAhead.start(self.session, requests, workers)
        then = self.ahead.reply_arrived if self.ahead else None
        pending = self.replies.prefetch(requests, worker, workers, then)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or workerinput is not None:
            return
        # The header named the conditions of the options; upskill cases found while collecting
        # bring their own skills, each a condition of its cases only.
        brought = [c for c in self.session.conditions if c not in self._header_conditions]
        if brought and self._header_conditions:
            reporter.write_line(
                f"upskill: upskill cases bring the condition(s) {', '.join(brought)}, each for "
                "its own cases"
            )
        if pending:
            reporter.write_line(
                f"upskill: asking the models for {pending} replies, "
                f"{self.settings.concurrency} at a time"
            )
