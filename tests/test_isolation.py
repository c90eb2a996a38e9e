"""Generated code that crashes, hangs, eats memory, reads secrets or writes outside its folder:
each ends one sample, in a session that goes on and reports every sample."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from model_server import ModelServer, Received
from test_fuzz import ATTACKS, hostile_reply

from conftest import ROW_SOFTMAX_TEST
from pytest_upskill.config import Settings
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.extract import render_reply
from pytest_upskill.run.processes import tree
from pytest_upskill.run.sandbox import mechanism
from pytest_upskill.session.samples import SampleRunner
from pytest_upskill.session.state import Session
from pytest_upskill.session.words import NO_SANDBOX

# Appended to the row softmax package's __init__.py; armed only when the test says so, so one
# quiet session builds (and caches) every variant first.
_ARMED = 'if __import__("os").environ.get("UPSKILL_TEST_HOSTILE"):\n'
HOSTILE = {
    "segfaults_on_load": _ARMED + "    import ctypes; ctypes.string_at(0)\n",
    "aborts": "def row_softmax(x):\n    import os; os.abort()\n",
    "exits": "def row_softmax(x):\n    import os; os._exit(0)\n",
    "spins": "def row_softmax(x):\n    while True:\n        pass\n",
    "hogs_memory": "def row_softmax(x):\n    chunks = []\n    while True:\n"
    "        chunks.append(b'x' * (128 << 20))\n",
    # It floods the harness's channel with its own "phase" messages, then leaves half a message
    # there: neither wins it time.
    "jams_the_channel": "def row_softmax(x):\n    import json, os, struct, time\n"
    "    sockets = [fd for fd in range(3, 256) if os.path.exists(f'/proc/self/fd/{fd}')\n"
    "               and os.readlink(f'/proc/self/fd/{fd}').startswith('socket:')]\n"
    "    def write(fd, data):\n"
    "        try:\n"
    "            os.write(fd, data)\n"
    "        except OSError:\n"  # the judge's socket: it stopped reading at the first
    "            pass\n"
    "    for _ in range(200):\n"
    "        for phase in ('setup', 'load', 'check', 'teardown'):\n"
    "            message = json.dumps({'phase': phase}).encode()\n"
    "            for fd in sockets:\n"
    "                write(fd, struct.pack('!i', len(message)) + message)\n"
    "        time.sleep(0.01)\n"
    "    for fd in sockets:\n"
    "        write(fd, struct.pack('!i', 100))\n"
    "    while True:\n"
    "        time.sleep(1)\n",
    "steals": _ARMED + "    import os, pathlib\n"
    "    pathlib.Path('environ.txt').write_text(repr(dict(os.environ)))\n"
    "    link = pathlib.Path('link')\n"
    "    link.symlink_to(os.environ['UPSKILL_TEST_VICTIM'])\n"
    "    try:\n"
    "        link.write_text('through a link')\n"
    "    except OSError:  # refused, or read-only\n"
    "        pathlib.Path('link-refused.txt').write_text('refused')\n"
    "    import socket\n"
    "    try:\n"  # out over TCP, to the model server on loopback
    "        socket.create_connection(('127.0.0.1', int(os.environ['UPSKILL_TEST_PORT'])))\n"
    "    except OSError:  # refused, or read-only\n"
    "        pathlib.Path('tcp-refused.txt').write_text('refused')\n"
    "    pathlib.Path(os.environ['UPSKILL_TEST_VICTIM']).write_text(\n"
    "        os.environ.get('ANTHROPIC_API_KEY', 'no key'))\n",
}
# Variants that misbehave when called keep the honest function until armed.
_CALLED = "\nif __import__('os').environ.get('UPSKILL_TEST_HOSTILE'):\n"

TEST = """
@pytest.mark.upskill("Attack: {variant}. Softmax of each row. Expose row_softmax(x).",
                     name="row_softmax", backend="cpu")
def test_{variant}(kernel):
    x = torch.randn(8, 33)
    torch.testing.assert_close(kernel.row_softmax(x), torch.softmax(x, dim=-1))
"""
SECRET = "sk-ant-do-not-leak-0123456789"


def _hostile_suite(pytester: pytest.Pytester, reference: Path) -> Path:
    """One test per hostile reply (test_fuzz's), per hostile variant of the reference, then the
    honest one; returns the test file."""
    package = Path("torch-ext") / "row_softmax" / "__init__.py"
    for variant, code in HOSTILE.items():
        target = reference.parent / variant
        shutil.copytree(reference, target)
        if code.startswith("def "):  # armed at call time
            code = _CALLED + "\n".join("    " + line for line in code.splitlines()) + "\n"
        with open(target / package, "a") as init:
            init.write("\n" + code)
    tests = "".join(TEST.format(variant=v) for v in [*ATTACKS, *HOSTILE, "row_softmax"])
    return pytester.makepyfile(test_hostile="import pytest\nimport torch\n" + tests)


@pytest.mark.skipif(mechanism() is None, reason="no sandbox works on this machine")
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_hostile_kernels_each_fail_one_sample_and_leak_nothing(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    workers: list[str],
) -> None:
    """Every attack of issue 5 in one session, through a loopback model: hostile replies end at
    extract, hostile kernels at load or check; the honest one passes."""
    test_file = _hostile_suite(pytester, reference)
    original = test_file.read_text()

    def answer(request: Received) -> str:
        attack = request.user.split("Attack: ")[1].split(".")[0]
        if attack in ATTACKS:
            return hostile_reply(request)
        return render_reply(read_project(reference.parent / attack))

    with ModelServer(answer=answer) as server:
        args = [f"--upskill-model=openai:m@{server.url}/v1", "--upskill-report=r.json"]
        args += [f"--upskill-pass-env=UPSKILL_TEST_{n}" for n in ("HOSTILE", "VICTIM", "PORT")]
        args += [*upskill_args, *workers]
        warm = pytester.runpytest(*args)  # builds every kernel, unarmed
        warm.assert_outcomes(failed=len(ATTACKS), passed=len(HOSTILE) + 1)

        monkeypatch.setenv("UPSKILL_TEST_HOSTILE", "1")
        monkeypatch.setenv("UPSKILL_TEST_VICTIM", str(test_file))
        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
        monkeypatch.setenv("UPSKILL_TEST_PORT", server.url.rpartition(":")[2])
        # A timeout long enough for the hog to pass 1.5 GiB on a busy runner first.
        result = pytester.runpytest(*args, "--upskill-timeout=10", "--upskill-memory-limit=1.5")

    result.assert_outcomes(failed=len(ATTACKS) + len(HOSTILE), passed=1)
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert len(samples) == len(ATTACKS) + len(HOSTILE) + 1
    ends = {s["test"].removeprefix("test_"): (s["stage"], s["reason"]) for s in samples}
    assert ends.pop("row_softmax") == ("check", "")
    assert {ends.pop(attack)[0] for attack in ATTACKS} == {"extract"}  # test_fuzz names reasons
    assert not list(pytester.path.parent.rglob("pwned.cpp"))
    assert ends == {
        "segfaults_on_load": (
            "load",
            "the test process was killed by SIGSEGV (segmentation fault)",
        ),
        "aborts": ("check", "the test process was killed by SIGABRT (aborted)"),
        "exits": ("check", "the test process exited with status 0"),
        "spins": ("check", "timed out after 10 s (--upskill-timeout)"),
        "jams_the_channel": ("check", "timed out after 10 s (--upskill-timeout)"),
        "hogs_memory": ("check", ends["hogs_memory"][1]),
        "steals": ("load", ends["steals"][1]),
    }
    assert "over the limit of 1.5 GiB (--upskill-memory-limit)" in ends["hogs_memory"][1]
    # The write through the link is refused; the write over the test file ends the import.
    assert "importing the package raised " in ends["steals"][1]
    assert {s["isolation"] for s in samples if s["stage"] != "extract"} == {"sandbox"}
    # The user's file is intact, the key never reached the generated code, nothing leaked.
    assert test_file.read_text() == original
    (steals,) = (s for s in samples if s["test"] == "test_steals")
    scratch = Path(steals["directory"]) / "run"  # the sample's own scratch folder
    environ = (scratch / "environ.txt").read_text()
    assert "UPSKILL_TEST_VICTIM" in environ  # passed with --upskill-pass-env
    assert SECRET not in environ
    assert "ANTHROPIC" not in environ
    assert (scratch / "link-refused.txt").exists()
    assert (scratch / "tcp-refused.txt").exists()
    assert SECRET not in result.stdout.str() + (pytester.path / "r.json").read_text()
    result.stdout.fnmatch_lines(
        [
            "upskill: builds and kernels run in a sandbox (*): no network, no secrets*",
            "*Fatal Python error: Segmentation fault*",
            "*openai:m*baseline*1/14*",
        ]
    )


@pytest.mark.parametrize(
    ("isolation", "words"),
    [
        ("process", "*in a child process without secrets; sandbox off (--upskill-isolation=proc*"),
        ("off", "*in this pytest process (--upskill-isolation=off): a crash in one ends the*"),
    ],
)
def test_the_header_and_records_say_where_kernels_ran(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    isolation: str,
    words: str,
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest(
        "--upskill-model=oracle",
        f"--upskill-isolation={isolation}",
        "--upskill-report=r.json",
        *upskill_args,
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"upskill: kernels load and run {words}"])
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert [s["isolation"] for s in samples] == [isolation]


WRAPPED_TESTS = """
import os
import warnings
from pathlib import Path

import pytest

MARKER = pytest.mark.upskill(
    "Softmax of each row. Expose row_softmax(x).",
    name="row_softmax", backend="cpu", reference="solutions/row_softmax",
)

@MARKER
def test_diff(kernel):
    assert [1, 2, 3] == [1, 2, 4]

@MARKER
@pytest.mark.filterwarnings("error")
def test_warning_as_error(kernel):
    warnings.warn("deprecated kernel API", DeprecationWarning)

@MARKER
def test_crash(kernel):
    os.abort()
"""


def test_the_kernel_process_runs_under_pytests_own_wrappers(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Assertion diffs, warning filters and JUnit properties all work for a test whose kernel
    runs in the sandboxed process, a crashed one included."""
    pytester.makepyfile(WRAPPED_TESTS)
    result = pytester.runpytest("--upskill-model=oracle", "--junitxml=junit.xml", *upskill_args)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*At index 2 diff: 3 != 4*", "*DeprecationWarning: deprecated*"])
    junit = ElementTree.parse(pytester.path / "junit.xml")
    crashed = junit.find(".//testcase[@name='test_crash[oracle-baseline-0]']")
    assert crashed is not None
    properties = {p.get("name"): p.get("value") for p in crashed.iter("property")}
    assert properties["upskill_outcome"] == "failed"
    assert properties["upskill_stage"] == "check"


def test_a_kernel_process_that_cannot_start_is_a_harness_error_once(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makeconftest(
        "import sys\n"
        "if sys.argv[0].endswith('child.py'):\n"
        "    raise RuntimeError('this conftest refuses the kernel process')\n"
    )
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest(
        "--upskill-model=oracle",
        "--upskill-samples=2",
        "--upskill-report=r.json",
        f"--basetemp={basetemp}",
        *upskill_args,
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*upskill [[]load[]] error: the test process did not start: *exited with status*",
            "*RuntimeError: this conftest refuses the kernel process*",
        ]
    )
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert [s["outcome"] for s in samples] == ["error", "error"]
    assert len(list(basetemp.glob("upskill-kernels-*"))) == 1  # not tried again for the second


def test_the_session_ends_without_waiting_for_the_kernel_process_to_wind_down(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    # The kernel process's own teardown is slow; it notes when it began, where it may write.
    pytester.makeconftest(
        "import os, pathlib, sys, time\n"
        "def pytest_unconfigure(config):\n"
        "    if sys.argv[0].endswith('child.py'):\n"
        "        pathlib.Path(os.environ['HOME'], 'winding').write_text(str(time.time()))\n"
        "        time.sleep(30)\n"
    )
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    basetemp = pytester.path / "basetemp"
    args = ["--upskill-model=oracle", f"--basetemp={basetemp}", *upskill_args]
    pytester.runpytest(*args).assert_outcomes(passed=1)
    ended = time.time()
    # None if it was killed before it began, empty if killed between opening and writing it.
    for winding in basetemp.rglob("winding"):
        if noted := winding.read_text():
            assert ended - float(noted) < 3


def test_a_skip_in_the_child_process_reads_back_as_a_skip(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(
        ROW_SOFTMAX_TEST.replace(
            "    x = torch.randn", "    pytest.skip('no tensor cores today')\n    x"
        )
    )
    result = pytester.runpytest(
        "--upskill-model=oracle", "-rs", "--upskill-report=r.json", *upskill_args
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_*.py:*: no tensor cores today"])
    (sample,) = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert (sample["outcome"], sample["reason"]) == ("skipped", "no tensor cores today")


def _kernel_processes(session: int) -> list[int]:
    """The pids of the sandboxed test processes below `session`."""
    found = []
    for pid in tree(session):
        try:
            if b"pytest_upskill.run.child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_session_killed_outright_takes_its_kernel_process_with_it(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    spin = "    import pathlib\n    pathlib.Path('spinning').touch()\n    while True: pass\n"
    pytester.makepyfile(ROW_SOFTMAX_TEST.replace("    x = torch.randn", spin + "    x"))
    basetemp = pytester.path / "basetemp"
    command = [sys.executable, "-m", "pytest", "--upskill-model=oracle", *upskill_args]
    session = pytester.popen(
        [*command, f"--basetemp={basetemp}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(basetemp.rglob("spinning")):  # in the sample's folder, the kernel's cwd
            assert time.monotonic() < deadline, "the kernel's test never started"
            time.sleep(0.2)
        # The child session, its fork running the kernel, and the sandbox around them.
        children = [pid for pid in tree(session.pid) if pid != session.pid]
        assert len(_kernel_processes(session.pid)) >= 2
    finally:
        session.kill()
        session.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_pdb_runs_kernels_in_the_pytest_process(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest("--upskill-model=oracle", "--pdb", *upskill_args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["upskill: kernels load and run in this pytest process*"])


def test_without_any_sandbox_the_sandbox_is_a_usage_error_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A machine without bubblewrap and Landlock cannot be had here: its answer is stood in for.
    monkeypatch.setattr("pytest_upskill.run.sandbox.mechanism", lambda: None)
    with pytest.raises(pytest.UsageError, match="install bubblewrap") as raised:
        Session(Settings(), []).open()
    assert str(raised.value) == NO_SANDBOX
    session = Session(Settings(isolation="process"), [])  # the explicit opt-out
    session.open()
    try:
        header = SampleRunner(session).pytest_report_header(config=None)  # type: ignore[arg-type]
        assert header[1].startswith(
            "upskill: kernels load and run in a child process without secrets; sandbox off"
        )
    finally:
        session.close()
