"""Malformed replies, generated: each is a project or one clear `extract` or `policy` failure,
and no file lands outside the sample's directory. `benchmarks/fuzz.py` runs the same property for longer."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_server import ModelServer, Received

from conftest import EXAMPLES
from pytest_upskill.errors import SampleFailed
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.extract import extract_files, render_reply
from pytest_upskill.project.layout import load_project, write_project
from pytest_upskill.project.policy import check_project

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# Pieces of paths, hostile ones included: traversal, absolute, home, drive letters, devices,
# case twins, trailing dots, control characters, link-like and nested names.
_PIECES = [
    "kernel_src",
    "torch-ext",
    "x",
    "X",
    "build.toml",
    "add.cu",
    "ADD.cu",
    "__init__.py",
    "/",
    "//",
    ".",
    "..",
    "~",
    "\\",
    "C:",
    "CON",
    "nul.txt",
    "com1",
    " ",
    ".",
    "\x00",
    "\n",
    "\t",
    "-",
    "$HOME",
    "%APPDATA%",
    ".git",
    "hooks",
    "é",
    "\u202e",
    "…",
]
_paths = st.one_of(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6).map("".join),
    st.text(max_size=30),
)
_TOML = [
    '[general]\nname = "x"\n',
    '[general]\nname = "x"\nedition = 5\n[torch]\nsrc = ["a.cpp"]\n[kernel.x]\nsrc = ["k.cpp"]\n',
    "[general\n",
    "general = 3\n",
    '[general]\nname = "x"\n[kernel.x]\nsrc = 5\n',
    '[general]\nname = ""\nbogus = true\n',
    '[general]\nname = "x"\n[kernel.x]\nbackend = "cpu"\nsrc = ["../../etc/passwd"]\n',
    "\x00\x01\x02",
]
_bodies = st.one_of(st.text(max_size=200), st.sampled_from(_TOML))
_fences = st.sampled_from(["```", "````", "~~~", "``", "```cuda", ""])
_blocks = st.builds(
    lambda fence, language, path, body, close: f"{fence}{language} {path}\n{body}\n{close}\n",
    _fences,
    st.sampled_from(["cuda", "cpp", "toml", "python", "", "text title="]),
    _paths,
    _bodies,
    _fences,
)
_labelled = st.builds(lambda path, body: f"**{path}**\n```\n{body}\n```\n", _paths, _bodies)
_commented = st.builds(lambda path, body: f"```\n// {path}\n{body}\n```\n", _paths, _bodies)
_many_files = st.integers(0, 600).map(
    lambda n: "".join(f"```cpp kernel_src/f{i}.cpp\nint f{i};\n```\n" for i in range(n))
)

# Near-valid projects: the example row softmax with files dropped, build.toml keys set to
# values of any type, and hostile files added. Most replies above end before build.toml.
_PROJECT = read_project(EXAMPLES / "solutions" / "row_softmax")
_BUILD_TOML = tomllib.loads(_PROJECT["build.toml"])
_toml_keys = st.sampled_from(
    [
        ("general", "name"),
        ("general", "backends"),
        ("general", "edition"),
        ("general", "bogus"),
        ("torch", "src"),
        ("torch", "cxx-flags"),
        ("kernel.row_softmax", "src"),
        ("kernel.row_softmax", "backend"),
        ("kernel.row_softmax", "depends"),
        ("kernel.row_softmax", "cxx-flags"),
        ("kernel.row_softmax", "cuda-capabilities"),
        ("kernel.other", "src"),
    ]
)
_toml_values = st.one_of(
    st.integers(-3, 9),
    st.booleans(),
    st.sampled_from(["cpu", "cuda", "row_softmax", "-O3", "-fplugin=x.so", "../x.cpp", ""]),
    st.lists(st.sampled_from(["torch", "-O2", "-DX=1", "@rsp", "kernel_src/row_softmax.cpp"])),
)


def _toml(tables: dict[str, dict[str, object]]) -> str:
    """TOML for tables of scalars and lists of strings (JSON spells those the same way)."""
    lines = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _near_valid_reply(
    dropped: set[str], edits: dict[tuple[str, str], object], extra: list[tuple[str, str]]
) -> str:
    tables = {
        "general": dict(_BUILD_TOML["general"]),
        "torch": dict(_BUILD_TOML["torch"]),
        **{f"kernel.{k}": dict(v) for k, v in _BUILD_TOML["kernel"].items()},
    }
    for (table, key), value in edits.items():
        tables.setdefault(table, {})[key] = value
    files = {path: text for path, text in _PROJECT.items() if path not in dropped}
    files["build.toml"] = _toml(tables)
    return render_reply(files) + "".join(f"```cpp {path}\n{body}\n```\n" for path, body in extra)


_near_valid = st.builds(
    _near_valid_reply,
    st.sets(st.sampled_from(sorted(_PROJECT)), max_size=2),
    st.dictionaries(_toml_keys, _toml_values, max_size=3),
    st.lists(st.tuples(_paths, st.text(max_size=40)), max_size=2),
)
replies = st.one_of(
    _near_valid,
    st.lists(st.one_of(_blocks, _labelled, _commented, st.text(max_size=80)), max_size=8).map(
        "\n".join
    ),
    st.binary(max_size=400).map(lambda data: data.decode("latin-1")),
    _many_files,
    st.integers(0, 6).map(lambda mb: "```cpp big.cpp\n" + "x" * (mb * 1024 * 1024) + "\n```\n"),
)


def check_reply(reply: str, base: Path) -> str | None:
    """Extract, write, validate and police `reply` in `base/sample`; the failure's reason, or
    None."""
    root = base / "sample" / "project"
    failure: SampleFailed | None = None
    try:
        files = write_project(extract_files(reply), root)
        check_project(load_project(root, files, "row_softmax"), "cpu", "kernel-builder")
    except SampleFailed as exc:
        failure = exc
    strays = [p for p in base.rglob("*") if not p.is_relative_to(base / "sample")]
    assert strays == [], f"files outside the sample directory: {strays}"
    if failure is None:
        return None
    assert failure.stage in ("extract", "policy")
    assert "\n" not in str(failure), "a reason is one line"
    return failure.reason


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=replies)
def test_any_reply_is_a_project_or_a_clear_extract_failure(reply: str) -> None:
    with tempfile.TemporaryDirectory() as base:
        check_reply(reply, Path(base))


ATTACKS = ["traversal", "absolute", "home", "huge", "many", "device"]
HOSTILE_TEST = """
@pytest.mark.upskill("Attack: {attack}.", name="victim", backend="cpu")
def test_{attack}(kernel):
    pass
"""


def hostile_reply(request: Received) -> str:
    attack = request.user.split("Attack: ")[1].split(".")[0]
    fence = "```cpp {path}\nint pwned;\n```\n"
    return {
        "traversal": fence.format(path="../../../pwned.cpp"),
        "absolute": fence.format(path="/tmp/pwned.cpp"),
        "home": fence.format(path="~/.bashrc"),
        "huge": "```cpp big.cpp\n" + "x" * (50 * 1024 * 1024) + "\n```\n",
        "many": "".join(fence.format(path=f"kernel_src/f{i}.cpp") for i in range(10_000)),
        "device": fence.format(path="kernel_src/CON.cpp"),
    }[attack]


def test_hostile_replies_each_fail_one_sample_and_the_report_is_complete(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    pytester.makepyfile("import pytest\n" + "".join(HOSTILE_TEST.format(attack=a) for a in ATTACKS))
    with ModelServer(answer=hostile_reply) as server:
        result = pytester.runpytest(
            f"--upskill-model=openai:m@{server.url}/v1",
            "--upskill-report=r.json",
            "--upskill-max-tokens=100000000",  # the server stops at the limit, as real ones do
            *upskill_args,
        )
    result.assert_outcomes(failed=len(ATTACKS))
    reasons = {
        sample["test"].removeprefix("test_"): (sample["stage"], sample["reason"])
        for sample in json.loads((pytester.path / "r.json").read_text())["samples"]
    }
    assert set(reasons) == set(ATTACKS)
    assert {stage for stage, _ in reasons.values()} == {"extract"}
    assert "leaves the project" in reasons["traversal"][1]
    assert "is absolute" in reasons["absolute"][1]
    assert "is absolute" in reasons["home"][1]
    assert "replies over 4 MB are refused" in reasons["huge"][1]
    assert "more than 256 files" in reasons["many"][1]
    assert "names the device" in reasons["device"][1]
    assert not list(pytester.path.parent.rglob("pwned.cpp"))
    assert not Path("/tmp/pwned.cpp").exists()
