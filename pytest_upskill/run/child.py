"""The sandboxed pytest session that tests kernels (`python -m pytest_upskill.run.child FD`).

It starts inside the sandbox, collects what its parent collected (importing torch and the
user's tests, never a kernel), then forks once per sample. Each fork narrows the sandbox to its
own scratch folder, loads the kernel, runs the test's whole protocol, answers on the sample's
own socket with one typed result, and exits; whatever it started is killed with it. So no
kernel sees another sample's process, files or channel, and none runs in this process.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import socket
import sys
import tempfile
import traceback
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .._compat import redirect_basetemp
from ..errors import SampleFailed
from .processes import become_subreaper, die_with_parent, kill_orphans
from .wire import Measurement, PhaseReport, Result, receive_frame, send_frame

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = ["SAMPLE_MARK", "ChildServer", "main"]

SAMPLE_MARK = "--- pytest-upskill: sample {} ---"


class ChildServer:
    """The child session's own plugin: it serves samples instead of running the test loop."""

    def __init__(self, channel: socket.socket, hello: dict[str, Any]) -> None:
        self.channel = channel  # to the parent: requests in, exit statuses out
        self.hello = hello
        self.upskill_input: dict[str, Any] = hello["upskill_input"]  # as xdist shares it
        self.sample_channel: socket.socket | None = None  # the running sample's, in its fork
        self.reports: list[pytest.TestReport] = []
        self.watched: dict[str, object] = {}  # what the test relies on, as the fork began

    def send(self, message: dict[str, Any]) -> None:
        """A message about the running sample, on its own socket (in the fork)."""
        if self.sample_channel is not None:
            send_frame(self.sample_channel, json.dumps(message).encode())

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        from ..keys import child_key

        config.stash[child_key] = self
        # Files are the parent's to write: the reports it writes, not a second copy from here.
        for option in ("xmlpath", "report_log", "htmlpath", "resultlog"):
            if getattr(config.option, option, None):
                setattr(config.option, option, None)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        # Imported before any fork, so what a kernel replaces in them is seen as replaced.
        import torch

        import pytest_upskill.check  # noqa: F401

        from .judge import Judged, run_judge

        # Its first call imports much (0.6 s): once here, not in every sample's fork. On the
        # CPU: a fork cannot use CUDA once this process has initialized it.
        torch.testing.assert_close(torch.zeros(2), torch.zeros(2))

        items = {item.nodeid: item for item in session.items}
        send_frame(self.channel, json.dumps({"ready": True}).encode())
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(self.channel, 1, 1)
            except OSError:
                fds = []
            frame = receive_frame(self.channel)
            if frame is None or not fds:  # the parent is done
                return True
            request = pickle.loads(frame)
            sample_channel = socket.socket(fileno=fds[0])
            item = items.get(request["nodeid"])
            why_not = _cannot_fork()
            answer: dict[str, Any] = {"id": request["id"]}
            if item is None or why_not:
                # On the parent's channel, which no sample holds: no kernel can claim these.
                answer.update(
                    {"missing": request["nodeid"]} if item is None else {"refused": why_not}
                )
                sample_channel.close()
                status = 0
            else:
                # Where this sample's own output starts in the log, for the parent to show.
                print(SAMPLE_MARK.format(request["id"]), flush=True)
                sys.stderr.flush()
                trials, judge_end = socket.socketpair()
                zygote = os.getpid()
                pid = os.fork()
                if pid == 0:
                    die_with_parent(zygote)
                    self.channel.close()
                    judge_end.close()
                    self.sample_channel = sample_channel
                    code = 70
                    try:
                        self._serve(session, item, request, trials)
                        code = 0
                    except BaseException:  # to the log, which the parent shows on a crash
                        traceback.print_exc()
                    finally:
                        os._exit(code)
                sample_channel.close()
                trials.close()
                # Forked after the sample's process, so that one never held its memory.
                judged = Judged()
                if os.fork() == 0:
                    die_with_parent(zygote)
                    self.channel.close()
                    run_judge(judge_end, judged, self.hello["kernel_readable"])
                    os._exit(0)
                judge_end.close()
                status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                kill_orphans()  # the judge too: every trial the sample waited for is judged
                answer.update(
                    compared=judged.compared,
                    problem=judged.problem,
                    names_check=_names_assert_correct(item),
                )
                judged.close()
            kill_orphans()  # whatever the sample left running, a daemon too
            send_frame(self.channel, json.dumps({**answer, "exit": status}).encode())

    def _serve(
        self,
        session: pytest.Session,
        item: pytest.Item,
        request: dict[str, Any],
        trials: socket.socket,
    ) -> None:
        """In the fork: confine it to the sample's scratch folder, run the item, answer."""
        from ..check import correct
        from ..keys import sample_key
        from .judge import hand_over
        from .landlock import abi_version, restrict

        sample = request["sample"]
        scratch = Path(request["scratch"])
        kernel_readable = self.hello["kernel_readable"]  # None: the sandbox is off
        if kernel_readable is not None and abi_version() >= 1:
            # Within the session's sandbox, this sample's scratch folder is all it may write.
            readable = [*(Path(p) for p in kernel_readable), Path(sample.directory)]
            if sample.build is not None:
                readable.append(Path(sample.build.directory))
            restrict(readable, [scratch], [Path(p) for p in self.hello["devices"]])
        for name, folder in (("HOME", scratch), ("TMPDIR", scratch / "tmp")):
            folder.mkdir(exist_ok=True)
            os.environ[name] = str(folder)
        tempfile.tempdir = None
        # The user's tmp_path goes in the scratch folder too.
        redirect_basetemp(session.config, scratch / "basetemp")
        item.stash[sample_key] = sample
        correct._outside = functools.partial(hand_over, trials)
        self.watched = _watched()  # before the kernel is imported: its import may patch too
        os.chdir(scratch)
        # The whole protocol, so assertion, warnings and timeout plugins wrap it.
        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
        self.send({"result": _result(self.reports, sample).model_dump(mode="json")})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append(report)

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.send({"phase": "setup"})

    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any]) -> None:
        if fixturedef.argname == "kernel":
            self.send({"phase": "load"})

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None]:
        self.send({"phase": "check"})
        try:
            return (yield)
        finally:
            now = _watched()
            replaced = [
                name
                for name, obj in self.watched.items()
                if obj is not None and not _same(obj, now.get(name))
            ]
            if replaced:  # whatever the test concluded, it concluded with the kernel's tools
                from ..keys import sample_key

                issue = SampleFailed(
                    "check",
                    f"the kernel replaced {', '.join(replaced[:5])}: its test's verdict is not "
                    "believed",
                )
                item.stash[sample_key].issue = issue
                raise issue

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        self.send({"phase": "teardown"})


# What a test's verdict rests on: comparisons, the check helpers, pytest's assertion machinery.
_WATCHED = {
    "builtins": ("AssertionError", "isinstance", "all", "any", "abs", "len", "getattr"),
    "math": ("isclose",),
    "torch": ("allclose", "isclose", "equal", "testing", "Tensor"),
    "torch.testing": ("assert_close",),
    "pytest": ("approx", "fail", "raises", "skip"),
    "_pytest.assertion.rewrite": ("_call_reprcompare", "_format_explanation", "_saferepr"),
    # (not util._reprcompare: pytest itself sets it for each test)
    "_pytest.assertion.util": ("assertrepr_compare",),
}
_TENSOR = ("__eq__", "__ne__", "__bool__", "allclose", "isclose", "equal", "item", "tolist")


def _watched() -> dict[str, object]:
    """The objects a test's verdict rests on, by name; a kernel that swaps one fails."""
    found: dict[str, object] = {}
    for module_name, names in _WATCHED.items():
        module = sys.modules.get(module_name)
        found[f"sys.modules[{module_name!r}]"] = module
        for name in names:
            found[f"{module_name}.{name}"] = getattr(module, name, None)
    # The check package and each of its modules: what a kernel replaces in any of them shows.
    for module_name, module in sorted(sys.modules.items()):
        if module_name == "pytest_upskill.check" or module_name.startswith("pytest_upskill.check."):
            for name in dir(module):
                if not name.startswith("__"):
                    found[f"{module_name}.{name}"] = getattr(module, name)
    check = sys.modules.get("pytest_upskill.check")
    if check is not None:
        found["pytest_upskill.check.TOLERANCES (its values)"] = tuple(check.TOLERANCES.items())
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    for name in _TENSOR:
        found[f"torch.Tensor.{name}"] = getattr(tensor, name, None)
    return found


def _same(before: object, after: object) -> bool:
    return before is after or (isinstance(before, tuple) and before == after)


def _result(reports: list[pytest.TestReport], sample: Any) -> Result:
    phases = []
    record: dict[str, Any] = {}
    for report in reports:
        record = getattr(report, "upskill_sample", None) or record
        text = report.longreprtext
        if report.skipped and isinstance(report.longrepr, tuple):
            text = str(report.longrepr[2]).removeprefix("Skipped: ")
        phases.append(
            PhaseReport(
                when=report.when,
                outcome=report.outcome,
                text=text,
                duration=report.duration,
                sections=[(str(title), str(body)) for title, body in report.sections[-16:]],
                wasxfail=getattr(report, "wasxfail", None),
            )
        )
    stage = record.get("stage", sample.stage)
    return Result(
        reports=phases,
        stage=stage if stage in ("load", "check") else "load",
        outcome=record.get("outcome", "error"),
        reason=record.get("reason", ""),
        speedups=[Measurement.model_validate(s.model_dump()) for s in sample.speedups[:1000]],
    )


def _names_assert_correct(item: pytest.Item) -> bool:
    """Whether the test's own code (not helpers it calls) names `check.assert_correct`: then it
    can pass only after a comparison reached the judge."""
    code = getattr(getattr(item, "obj", None), "__code__", None)
    codes = [code] if isinstance(code, types.CodeType) else []
    while codes:
        code = codes.pop()
        if "assert_correct" in code.co_names:
            return True
        codes += [const for const in code.co_consts if isinstance(const, types.CodeType)]
    return False


def _cannot_fork() -> str | None:
    """Why forking now would break the sample, if it would: CUDA cannot be used in a fork of
    a process that initialized it."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return (
            "CUDA was initialized while the tests were collected (a test module or conftest "
            "used the GPU when imported): create CUDA tensors inside tests or fixtures"
        )
    return None


def main() -> int:
    channel = socket.socket(fileno=int(sys.argv[1]))
    hello = pickle.loads(receive_frame(channel) or b"")
    become_subreaper()
    server = ChildServer(channel, hello)
    return int(pytest.main(hello["args"], plugins=[server]))


if __name__ == "__main__":
    sys.exit(main())
