"""Issue 13's attacks, through the oracle's `reference=` path, each checked from outside the
plugin: listeners that must hear nothing, files that must not change, processes that must be
gone, and the report files. They hold as root (as CI runs) and as an unprivileged user."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROW_SOFTMAX_TEST, plant
from pytest_upskill.errors import SampleFailed
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.build import build_project
from pytest_upskill.project.layout import load_project, write_project
from pytest_upskill.run.sandbox import mechanism
from pytest_upskill.task import Task

_REQUIRED = os.environ.get("PYTEST_UPSKILL_SANDBOX") or "bubblewrap"
if os.environ.get("UPSKILL_REQUIRE_SANDBOX") and mechanism() != _REQUIRED:
    raise RuntimeError(f"UPSKILL_REQUIRE_SANDBOX is set, but {_REQUIRED} does not work here")
pytestmark = pytest.mark.skipif(mechanism() is None, reason="no sandbox works on this machine")

SECRET = "sk-ant-api03-DoNotLeak0123456789abcdefXYZ"
DAEMON_MARK = "upskill-test-daemon-heartbeat"

# Appended to the row softmax package: at call time, the attack named by the running test.
ATTACKS = r'''

import json as _json, os as _os, socket as _socket, subprocess as _subprocess, sys as _sys
from pathlib import Path as _Path


def _try(results, label, action):
    try:
        value = action()
        results[label] = "done" if value is None else str(value)[:4000]
    except BaseException as exc:
        results[label] = "refused: " + type(exc).__name__


def _environs():
    found = []
    for entry in _Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append(entry.joinpath("environ").read_bytes().decode("latin-1"))
            except OSError:
                pass
    return "\n".join(found)


def _reads(results):
    home = _os.environ["UPSKILL_TEST_HOME"]
    _try(results, "environ", _environs)
    _try(results, "ssh key", lambda: _Path(home, ".ssh", "id_rsa").read_text())
    _try(results, "shadow", lambda: _Path("/etc/shadow").read_text())


def _connect(family, kind, address, protocol=0):
    with _socket.socket(family, kind, protocol) as s:
        s.settimeout(2)
        s.connect(address)
        s.sendall(b"leak")


def _network(results):
    home = _os.environ["UPSKILL_TEST_HOME"]
    tcp = int(_os.environ["UPSKILL_TEST_TCP"])
    udp = ("127.0.0.1", int(_os.environ["UPSKILL_TEST_UDP"]))
    _try(results, "udp", lambda: _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM).sendto(b"leak", udp))
    _try(results, "tcp", lambda: _connect(_socket.AF_INET, _socket.SOCK_STREAM, ("127.0.0.1", tcp)))
    _try(results, "mptcp", lambda: _connect(_socket.AF_INET, _socket.SOCK_STREAM, ("127.0.0.1", tcp), 262))
    _try(results, "raw", lambda: _socket.socket(_socket.AF_INET, _socket.SOCK_RAW, _socket.IPPROTO_ICMP))
    _try(results, "unix path", lambda: _connect(_socket.AF_UNIX, _socket.SOCK_STREAM, home + "/agent.sock"))
    _try(results, "unix abstract", lambda: _connect(_socket.AF_UNIX, _socket.SOCK_STREAM, "\0" + _os.environ["UPSKILL_TEST_ABSTRACT"]))


def _devices(results):
    import fcntl, stat

    _try(results, "mknod", lambda: _os.mknod("block", 0o600 | stat.S_IFBLK, _os.makedev(8, 0)))
    blocks = [p for p in _Path("/dev").rglob("*") if p.exists() and stat.S_ISBLK(p.stat().st_mode)]
    _try(results, "block devices", lambda: [_os.open(p, _os.O_WRONLY) for p in blocks] and "opened")
    def tiocsti():
        for fd in (0, 1, 2):
            try:
                fcntl.ioctl(fd, 0x5412, b"x")
                return "pushed into fd %d" % fd
            except OSError:
                pass
        fcntl.ioctl(_os.open("/dev/tty", _os.O_RDWR), 0x5412, b"x")
    _try(results, "tiocsti", tiocsti)


def _writes(results):
    here = _Path.cwd()  # the sample's scratch folder
    _try(results, "test file", lambda: _Path(_os.environ["UPSKILL_TEST_VICTIM"]).write_text("pwned"))
    _try(results, "own reply", lambda: (here.parent / "reply.md").write_text("inno" + "cent"))
    _try(results, "own project", lambda: (here.parent / "project" / "build.toml").write_text("pwned"))
    _try(results, "build cache", lambda: _Path(__file__).write_text("pwned"))
    _try(results, "build cache new file", lambda: _Path(__file__).with_name("evil.py").write_text("pwned"))
    def siblings():
        for other in here.parent.parent.iterdir():
            if other != here.parent and other.is_dir():
                (other / "planted.txt").write_text("pwned")
                (other / "reply.md").write_text("pwned")
    _try(results, "other samples", siblings)


DAEMON = "import os, sys, time\n# %s\nos.setsid()\nif os.fork():\n    os._exit(0)\nwhile True:\n    open(sys.argv[1], 'a').write('.')\n    time.sleep(0.05)\n"


def _daemon(results):
    code = DAEMON % _os.environ["UPSKILL_TEST_DAEMON_MARK"]
    beat = str(_Path.cwd() / "heartbeat")
    _try(results, "daemon", lambda: _subprocess.Popen([_sys.executable, "-c", code, beat]).pid)
    import time
    for _ in range(500):  # until it beats: it is running, detached, when the sample ends
        if _Path(beat).exists():
            break
        time.sleep(0.01)


def _forge(messages):
    """Frames on every socket this process holds, then exit before the harness answers."""
    for fd in range(3, 256):
        try:
            if not _os.readlink("/proc/self/fd/%d" % fd).startswith("socket:"):
                continue
            for message in messages:
                _os.write(fd, len(message).to_bytes(4, "big") + message)
            _os.write(fd, (100).to_bytes(4, "big") + b"half")
        except OSError:
            pass
    _os._exit(0)


def _result(result):
    return [b"not json", _json.dumps({"result": result}).encode()]


_PASSED = {"when": "call", "outcome": "passed", "text": "", "duration": 0.1}
_FORGED = {
    "forges": _result(
        {"reports": [dict(_PASSED, when="setup"), _PASSED, dict(_PASSED, when="teardown")],
         "stage": "check", "outcome": "passed", "model": "evil", "condition": "x",
         "speedups": [{"shape": "x", "kernel_s": 1e-6, "reference_s": 4.2e-5}]}),
    "malformed": _result(
        {"reports": [dict(_PASSED, duration="fast")], "stage": "check", "outcome": "passed"}),
    # What only the harness may say (a sample it did not run is no fault of the model's).
    "claims": [_json.dumps({"refused": "the GPU fell over", "missing": "x"}).encode()],
    "nests": [b"[" * 200000],  # deeper than a JSON parser goes
}


def _fills(results):
    with open("big", "wb") as big:  # 400 MB/s at most: the limit sees it in time
        while True:
            big.write(b"x" * (4 << 20))
            big.flush()
            _os.sched_yield()
            __import__("time").sleep(0.01)


def _start_folder(results):
    start = _os.environ["UPSKILL_TEST_START"]
    _try(results, "credentials", lambda: _Path(start, "credentials").read_text())
    _try(results, "listing", lambda: sorted(p.name for p in _Path(start).iterdir()))


def _attack():
    test = _os.environ.get("PYTEST_CURRENT_TEST", "")
    name = test.split("::test_")[-1].split("[")[0]
    if name in _FORGED:
        _forge(_FORGED[name])
    if name == "patches":  # the verdict's own tool, then a wrong answer
        import torch

        torch.testing.assert_close = lambda *args, **kwargs: None
        return True
    attack = {"reads": _reads, "network": _network, "devices": _devices, "writes": _writes,
              "daemon": _daemon, "start_folder": _start_folder, "fills": _fills}.get(name)
    if attack is not None:
        results = {}
        attack(results)
        _Path("probe.json").write_text(_json.dumps(results))


def _forge_a_pass():
    """A well-formed passing result on the sample's own channel, then an exit."""
    import gc

    server = next(o for o in gc.get_objects() if type(o).__name__ == "ChildServer")
    phases = [dict(_PASSED, when="setup"), _PASSED, dict(_PASSED, when="teardown")]
    server.send({"result": {"reports": phases, "stage": "check", "outcome": "passed"}})
    _os._exit(0)


_calls = []


def _checked_attack():
    """Against check.assert_correct: a wrong answer (None: the honest one)."""
    name = _os.environ.get("PYTEST_CURRENT_TEST", "").split("::test_")[-1].split("[")[0]
    _calls.append(name)
    if name == "inverts":  # what the comparison's `~isclose` uses: every value then matches
        import torch

        torch.Tensor.__invert__ = lambda self: torch.zeros_like(self, dtype=torch.bool)
        return True
    if name == "forges_early" or (name == "forges_late" and len(_calls) > 1):
        _forge_a_pass()  # before any comparison, or after a failed one
    return name == "forges_late"


_honest_row_softmax = row_softmax


def row_softmax(x):
    if _attack():
        return x * 0
    if _checked_attack():
        return x + 1
    return _honest_row_softmax(x)
'''

TESTS = """
import pytest
import torch

from pytest_upskill import check

MARKER = pytest.mark.upskill(
    "Softmax of each row. Expose row_softmax(x).",
    name="row_softmax", backend="cpu", reference="solutions/hostile",
)
{tests}
"""
ATTACK_TEST = """
@MARKER
def test_{name}(kernel):
    x = torch.randn(8, 33)
    torch.testing.assert_close(kernel.row_softmax(x), torch.softmax(x, dim=-1))
"""
HONEST_FAILURE = """
@MARKER
def test_after_them_a_failure_is_a_failure(kernel):
    assert kernel.row_softmax(torch.ones(2, 2)).sum().item() == 0
"""
CHECKED_TEST = """
@MARKER
def test_{name}(kernel):
    check.assert_correct(
        kernel.row_softmax, lambda x: torch.softmax(x, dim=-1), lambda: torch.randn(8, 33)
    )
"""
NAMES = ["reads", "network", "devices", "writes", "daemon"]
NAMES += ["forges", "malformed", "claims", "nests", "patches", "honest"]
CHECKED = ["inverts", "forges_early", "forges_late", "checked"]


def _hostile_reference(reference: Path, hostile: Path) -> Path:
    """The row softmax with the attacks appended to its package: one build serves them all."""
    for relative, text in read_project(reference).items():
        (hostile / relative).parent.mkdir(parents=True, exist_ok=True)
        (hostile / relative).write_text(text)
    with open(hostile / "torch-ext" / "row_softmax" / "__init__.py", "a") as init:
        init.write(ATTACKS)
    return hostile


@contextlib.contextmanager
def _listeners(home: Path) -> Iterator[dict[str, socket.socket]]:
    """A UDP, a TCP, a Unix-path and an abstract Unix listener on this machine."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(home / "agent.sock"))
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0upskill-test-{os.getpid()}")
    abstract.listen()
    sockets = {"udp": udp, "tcp": tcp, "unix": unix, "abstract": abstract}
    for each in sockets.values():
        each.setblocking(False)
    try:
        yield sockets
    finally:
        for each in sockets.values():
            each.close()


def _heard(sockets: dict[str, socket.socket]) -> list[str]:
    heard = []
    for name, listener in sockets.items():
        try:
            if name == "udp":
                listener.recvfrom(100)
            else:
                listener.accept()[0].close()
            heard.append(name)
        except BlockingIOError:
            pass
    return heard


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.endswith(".lock")
    }


def _daemons() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and DAEMON_MARK.encode() in (proc / "cmdline").read_bytes():
                found.append(proc.name)
    return found


def test_hostile_kernels_reach_nothing_outside_their_own_folder(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Reads of other processes and the home folder, every kind of socket, devices, writes
    outside, a daemon, forged and malformed messages: each stays inside its sample, and the
    samples after them keep their own results."""
    _hostile_reference(reference, reference.parent / "hostile")
    tests = "".join(ATTACK_TEST.format(name=name) for name in NAMES) + HONEST_FAILURE
    tests += "".join(CHECKED_TEST.format(name=name) for name in CHECKED)
    test_file = pytester.makepyfile(test_hostile=TESTS.format(tests=tests))
    original = test_file.read_text()
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text(f"PRIVATE KEY {SECRET}")
    for name, value in {
        "ANTHROPIC_API_KEY": SECRET,
        "DATABASE_URL": f"postgres://user:{SECRET}@db/x",
        "UPSKILL_TEST_HOME": str(home),
        "UPSKILL_TEST_VICTIM": str(test_file),
        "UPSKILL_TEST_DAEMON_MARK": DAEMON_MARK,
        "UPSKILL_TEST_ABSTRACT": f"upskill-test-{os.getpid()}",
    }.items():
        monkeypatch.setenv(name, value)
    passed = [f"--upskill-pass-env={name}" for name in ("HOME", "VICTIM", "DAEMON_MARK")]
    passed = [p.replace("=", "=UPSKILL_TEST_") for p in passed]
    passed += ["--upskill-pass-env=UPSKILL_TEST_" + n for n in ("UDP", "TCP", "ABSTRACT")]
    with _listeners(home) as sockets:
        monkeypatch.setenv("UPSKILL_TEST_UDP", str(sockets["udp"].getsockname()[1]))
        monkeypatch.setenv("UPSKILL_TEST_TCP", str(sockets["tcp"].getsockname()[1]))
        result = pytester.runpytest(
            "--upskill-model=oracle",
            "--upskill-report=r.json",
            "--upskill-html=r.html",
            "--upskill-timeout=120",
            *passed,
            *upskill_args,
        )
        time.sleep(0.2)
        assert _heard(sockets) == []  # no packet, no connection, of any kind
    outcomes = {
        s["test"].removeprefix("test_"): s
        for s in json.loads((pytester.path / "r.json").read_text())["samples"]
    }
    probes = {
        name: json.loads((Path(outcomes[name]["directory"]) / "run" / "probe.json").read_text())
        for name in ("reads", "network", "devices", "writes", "daemon")
    }
    everything = result.stdout.str() + json.dumps(probes)
    for written in ("r.json", "r.html"):
        everything += (pytester.path / written).read_text()
    assert SECRET not in everything

    # Reads: no other process's environment holds the key, and the home folder is not there.
    assert "sk-ant" not in probes["reads"]["environ"]
    assert probes["reads"]["ssh key"].startswith("refused")
    assert probes["reads"]["shadow"].startswith("refused")
    # Network of every kind, devices and keystrokes: refused where they were tried.
    assert all(v.startswith("refused") for v in probes["network"].values()), probes["network"]
    assert probes["devices"]["mknod"].startswith("refused")
    assert probes["devices"]["tiocsti"].startswith("refused")
    assert probes["devices"]["block devices"] in ("[]", "refused: PermissionError")
    assert not (Path(outcomes["devices"]["directory"]) / "run" / "block").exists()
    # Writes: only in its own scratch folder; its reply, project and build stay as saved.
    assert test_file.read_text() == original
    writes = Path(outcomes["writes"]["directory"])
    assert all(v.startswith("refused") for v in probes["writes"].values()), probes["writes"]
    assert not list(pytester.path.rglob("planted.txt"))
    assert (writes / "reply.md").read_text().startswith("```")  # as the oracle wrote it
    assert "innocent" not in (writes / "reply.md").read_text()
    assert "pwned" not in (writes / "project" / "build.toml").read_text()
    # A daemon that left its session is gone with its sample: no process, no more heartbeats.
    beat = Path(outcomes["daemon"]["directory"]) / "run" / "heartbeat"
    assert probes["daemon"]["daemon"].isdigit()
    assert beat.exists()
    size = beat.stat().st_size
    time.sleep(0.5)
    assert beat.stat().st_size == size
    assert _daemons() == []

    # Forged and malformed messages fail their own sample; nobody else's result changes.
    assert {s["model"] for s in outcomes.values()} == {"oracle"}
    assert {s["condition"] for s in outcomes.values()} == {"baseline"}
    forged, malformed = outcomes["forges"], outcomes["malformed"]
    assert (forged["outcome"], forged["stage"]) == ("failed", "check")
    assert "does not read back (model: Extra inputs are not permitted)" in forged["reason"]
    assert forged.get("speedup") is None
    assert (malformed["outcome"], malformed["stage"]) == ("failed", "check")
    assert "does not read back (reports.0.duration" in malformed["reason"]
    for name in ("claims", "nests"):  # not the harness's error: the model's failure
        claimed = outcomes[name]
        assert (claimed["outcome"], claimed["stage"]) == ("failed", "check"), claimed
        assert claimed["reason"] == "the test process sent something that is not a message"
    patched = outcomes["patches"]
    assert (patched["outcome"], patched["stage"]) == ("failed", "check")
    assert patched["reason"] == (
        "the kernel replaced torch.testing.assert_close: its test's verdict is not believed"
    )
    honest, failure = outcomes["honest"], outcomes["after_them_a_failure_is_a_failure"]
    assert (honest["outcome"], failure["outcome"]) == ("passed", "failed")
    assert "assert" in failure["reason"]

    # check.assert_correct compares outside the kernel's process, and that word stands.
    for name in ("inverts", "forges_early", "forges_late"):
        assert (outcomes[name]["outcome"], outcomes[name]["stage"]) == ("failed", "check")
    assert "values out of tolerance" in outcomes["inverts"]["reason"]
    assert outcomes["forges_early"]["reason"] == (
        "the test process reported a pass, but none of its check.assert_correct comparisons "
        "reached the judge outside the kernel's process"
    )
    late = outcomes["forges_late"]["reason"]
    assert late.startswith("check.assert_correct, compared outside the kernel's process: ")
    assert "values out of tolerance" in late
    assert late.endswith("(the test process reported a pass)")
    assert outcomes["checked"]["outcome"] == "passed"
    assert len(outcomes) == len(NAMES) + len(CHECKED) + 1
    result.assert_outcomes(passed=len(NAMES) - 5 + 1, failed=6 + 3)


def test_the_folder_pytest_starts_in_stays_out_of_reach(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`cd ~ && pytest proj/tests`: the tests are readable, the rest of the start folder not."""
    project = pytester.path / "proj"
    hostile = _hostile_reference(reference, project / "solutions" / "hostile")
    assert hostile.is_dir()
    (project / "pytest.ini").write_text("[pytest]\n")
    tests = TESTS.format(tests=ATTACK_TEST.format(name="start_folder"))
    (project / "test_start.py").write_text(tests)
    (pytester.path / "credentials").write_text(f"aws_secret_access_key = {SECRET}")
    monkeypatch.setenv("UPSKILL_TEST_START", str(pytester.path))
    result = pytester.runpytest(
        "proj/test_start.py",
        "--upskill-model=oracle",
        "--upskill-report=r.json",
        "--upskill-pass-env=UPSKILL_TEST_START",
        *upskill_args,
    )
    result.assert_outcomes(passed=1)
    (sample,) = json.loads((pytester.path / "r.json").read_text())["samples"]
    probe = json.loads((Path(sample["directory"]) / "run" / "probe.json").read_text())
    assert probe["credentials"].startswith("refused"), probe
    assert "credentials" not in probe["listing"]
    assert SECRET not in result.stdout.str() + json.dumps(probe)


def test_a_sample_that_fills_its_folder_is_stopped(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    _hostile_reference(reference, reference.parent / "hostile")
    pytester.makepyfile(test_fills=TESTS.format(tests=ATTACK_TEST.format(name="fills")))
    result = pytester.runpytest(
        "--upskill-model=oracle",
        "--upskill-report=r.json",
        "--upskill-timeout=60",
        "--upskill-disk-limit=0.0625",
        *upskill_args,
    )
    result.assert_outcomes(failed=1)
    (sample,) = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert sample["stage"] == "check"
    assert sample["reason"].startswith("the test process wrote ")
    assert sample["reason"].endswith(
        " GiB in its folder, over the limit of 0.0625 GiB (--upskill-disk-limit)"
    )
    # Stopped soon after it passed the limit: far from the 4 GiB a file may have.
    assert (Path(sample["directory"]) / "run" / "big").stat().st_size < 1 << 30


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("kernel.row_softmax", "include", ["k\nrule pwn\n  command = touch {pwned}\nbuild p: pwn"]),
        ("torch", "include", ["k\nbuild p: phony\ncflags = -x; touch {pwned}"]),
        ("kernel.row_softmax", "cuda-capabilities", ["9.0a\nrule pwn\n  command = touch {pwned}"]),
    ],
    ids=["kernel-include", "torch-include", "cuda-capabilities"],
)
def test_build_toml_cannot_add_a_build_rule(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    table: str,
    key: str,
    value: list[str],
) -> None:
    """A line break in a build.toml value ends at stage policy, naming the key; nothing runs."""
    pwned = pytester.path / "pwned"
    hostile = json.dumps([v.format(pwned=pwned) for v in value])
    plant(reference, "build.toml", f"[{table}]\n", f"[{table}]\n{key} = {hostile}\n")
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest("--upskill-model=oracle", "--upskill-report=r.json", *upskill_args)
    result.assert_outcomes(failed=1)
    (sample,) = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert sample["stage"] == "policy"
    assert f"{key}[0] holds a control character (U+000A)" in sample["reason"]
    assert not pwned.exists()


def test_a_build_refuses_a_line_break_that_passed_policy(tmp_path: Path) -> None:
    """The build's own escaping stands behind policy: a project that never went through it
    still cannot add a rule to build.ninja."""
    pwned = tmp_path / "pwned"
    files = read_project(EXAMPLES / "solutions" / "row_softmax")
    files["build.toml"] = files["build.toml"].replace(
        "[kernel.row_softmax]\n",
        f'[kernel.row_softmax]\ninclude = ["k\\nrule pwn\\n  command = touch {pwned}"]\n',
    )
    project = load_project(tmp_path / "p", write_project(files, tmp_path / "p"), "row_softmax")
    task = Task(prompt="t", name="row_softmax", backend="cpu")
    with pytest.raises(SampleFailed, match="refusing a control character"):
        build_project(project, task, tmp_path / "cache", timeout_s=60, sandbox=mechanism())
    assert not pwned.exists()


@pytest.mark.parametrize("how", ["include", "incbin"])
def test_compile_time_reads_no_file_outside_the_project(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    how: str,
) -> None:
    """`#include` or `.incbin` of a file outside the project fails at build, and the file's
    content reaches no report."""
    secret = tmp_path_factory.mktemp("outside") / "credentials.h"
    secret.write_text(f'const char* key = "{SECRET}";\n')
    line = f'#include "{secret}"' if how == "include" else f'asm(".incbin \\"{secret}\\"");'
    plant(reference, "kernel_src/row_softmax.cpp", "#include", f"{line}\n#include")
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest(
        "--upskill-model=oracle", "--upskill-report=r.json", "--upskill-html=r.html", *upskill_args
    )
    result.assert_outcomes(failed=1)
    (sample,) = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert sample["stage"] == "build"
    assert str(secret.name) in sample["reason"]
    written = result.stdout.str() + (pytester.path / "r.json").read_text()
    written += (pytester.path / "r.html").read_text()
    written += (Path(sample["build_directory"]) / "build.log").read_text()
    assert SECRET not in written


@pytest.mark.parametrize("forced", ["", "landlock"])
def test_the_sandbox_check_says_every_protection_holds(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, forced: str
) -> None:
    if forced:
        monkeypatch.setenv("PYTEST_UPSKILL_SANDBOX", forced)
    result = pytester.runpytest("--upskill-sandbox-check")
    assert result.ret == 0, result.stdout.str()
    mechanism_line = "landlock" if forced else mechanism()
    result.stdout.fnmatch_lines([f"*sandbox: {mechanism_line}*", "*13 of 13 protections hold*"])
    assert "NOT HELD" not in result.stdout.str()
    assert _daemons() == []
    assert sys.executable  # the probes ran with this Python


def test_a_flood_of_compiler_errors_is_kept_bounded(tmp_path: Path) -> None:
    """A few megabytes of errors reach neither this process whole nor the cache: the log keeps
    its beginning and end, and a failed build keeps no objects."""
    files = read_project(EXAMPLES / "solutions" / "row_softmax")
    flood = "".join(f"int a{i} = b{i};\n" for i in range(10000))  # 1.4 MB of errors
    files["kernel_src/flood.cpp"] = flood
    files["build.toml"] = files["build.toml"].replace(
        'src = ["kernel_src/row_softmax.cpp"]',
        'src = ["kernel_src/row_softmax.cpp", "kernel_src/flood.cpp"]',
    )
    project = load_project(tmp_path / "p", write_project(files, tmp_path / "p"), "row_softmax")
    task = Task(prompt="t", name="row_softmax", backend="cpu")
    build = build_project(project, task, tmp_path / "cache", timeout_s=600, sandbox=mechanism())
    assert not build.ok
    assert build.reason.startswith("kernel_src/flood.cpp:1:10: error:")
    assert len(build.log) < 1.1 * (1 << 20)
    assert "bytes of output cut by pytest-upskill" in build.log
    assert "b9999" in build.log  # the end is kept too
    cached = Path(build.directory)
    assert (cached / "build.log").stat().st_size < 1.1 * (1 << 20)
    assert not (cached / "obj").exists()
