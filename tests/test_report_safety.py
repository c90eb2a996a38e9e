"""Hostile text (from a model, its build or a skill) in every report: no terminal control
sequence, no Markdown or HTML, no secret of this process."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROW_SOFTMAX_TEST
from pytest_upskill.errors import SampleError, SampleFailed, SampleSkipped
from pytest_upskill.report import (
    summary_table,
    write_html_report,
    write_json_report,
    write_markdown_report,
)
from pytest_upskill.report.results import SampleRecord, Statistics, statistics
from pytest_upskill.sanitize import clean_text, markdown_text

SECRET = "postgres://u:hunter2hunter2@h/db"
# Clears the screen, sets the window title, then a C1 CSI (red) in its 8-bit form.
ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m"
HOSTILE_NAME = "x\n# Heading ![img](http://evil/x.png) <script>alert(1)</script> a|b"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", SECRET)
    return SECRET


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\x1b[2Jb", "ab"),
        ("a\x1b[38;5;196mred\x1b[0m", "ared"),
        # An OSC 8 hyperlink, terminated by ST, keeps only its visible text.
        ("see \x1b]8;;http://evil/\x1b\\here\x1b]8;;\x1b\\ now", "see here now"),
        ("\x1b]0;title\x07ok", "ok"),
        ("\x1bP+q544e\x1b\\ok", "ok"),  # DCS
        ("a\x9b31mb\x9d0;t\x9cc", "abc"),  # 8-bit CSI and OSC
        ("\x1b(B\x1b7z\x1bc", "z"),  # charset, save cursor, reset
        # A line that overwrites itself on a terminal shows both halves.
        ("PASSED\rFAILED", "PASSEDFAILED"),
        ("a\x00b\x08c\x7fd\x85e", "abcd e"),
        ("one\u2028two\u2029three", "one two three"),
        ("keeps\ttabs\nand newlines", "keeps\ttabs\nand newlines"),
        # An unterminated string command loses its introducer; its text stays readable.
        ("\x1b]no end", "no end"),
    ],
)
def test_clean_text_removes_control_sequences(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def test_clean_text_redacts_withheld_environment_values(secret: str) -> None:
    assert clean_text(f"cannot connect to {secret}: refused") == (
        "cannot connect to [redacted]: refused"
    )
    # Split by an escape sequence, the secret is still found once the sequence is gone.
    half = len(secret) // 2
    assert clean_text(f"{secret[:half]}\x1b[0m{secret[half:]}") == "[redacted]"


def test_clean_text_reads_the_environment_at_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    assert clean_text(SECRET) == SECRET
    monkeypatch.setenv("DATABASE_URL", SECRET)
    assert clean_text(SECRET) == "[redacted]"


def test_clean_text_leaves_passed_variables_and_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/opt/cuda/bin:/usr/bin")
    monkeypatch.setenv("MAX_JOBS", "12345678")  # passed to builds: no secret
    monkeypatch.setenv("UPSKILL_TEST_HOME", "/home/someone/work")  # withheld, but a path
    text = "nvcc in /opt/cuda/bin:/usr/bin, 12345678 jobs, in /home/someone/work"
    assert clean_text(text) == text


def test_markdown_text_is_plain_text_on_one_line() -> None:
    assert markdown_text(HOSTILE_NAME) == (
        r"x \# Heading \!\[img\]\(http\:\/\/evil\/x\.png\) "
        r"\<script\>alert\(1\)\<\/script\> a\|b"
    )
    assert markdown_text("`code` *em* _em_ ~~del~~ &amp; www.evil.com @someone") == (
        r"\`code\` \*em\* \_em\_ \~\~del\~\~ \&amp\; www\.evil\.com \@someone"
    )
    assert markdown_text("- item\n1. item\n> quote") == r"\- item 1\. item \> quote"
    # A backslash of its own is escaped too, so it cannot unescape a pipe.
    assert markdown_text("a\\|b") == r"a\\\|b"


def test_markdown_text_keeps_ordinary_names_readable() -> None:
    assert markdown_text("cpu-kernels") == "cpu-kernels"
    assert markdown_text("test_row_softmax") == "test_row_softmax"
    assert markdown_text("claude-sonnet-4-5") == "claude-sonnet-4-5"


def test_markdown_text_cleans_first(secret: str) -> None:
    assert markdown_text(f"\x1b[31m{secret}\x1b[0m") == r"\[redacted\]"


def test_failure_lines_show_the_cleaned_reason(secret: str) -> None:
    reason = f"{ESCAPES}cannot reach {secret}\rok"
    failed = SampleFailed("build", reason)
    assert failed.reason == reason  # kept as given: the report cleans it where it is shown
    assert str(failed) == "upskill [build] failed: cannot reach [redacted]ok"
    assert str(SampleError("generate", reason)) == (
        "upskill [generate] error: cannot reach [redacted]ok"
    )
    assert str(SampleSkipped("load", reason)) == "cannot reach [redacted]ok"


def _hostile_stats(tmp_path: Path, secret: str) -> Statistics:
    """Two samples of a skill whose condition name is hostile: one failing with a reason that
    carries escapes and a secret, one flagged for a suspicious speedup with a hostile warning."""
    directory = tmp_path / "sample"
    (directory / "project" / f"kernel_src{ESCAPES}").mkdir(parents=True)
    (directory / "reply.md").write_text(f"{ESCAPES}<b>reply</b> {secret}\n")
    (directory / "project" / f"kernel_src{ESCAPES}" / "k.cpp").write_text(f"// {secret}\n")
    common = {
        "test": f"test_{ESCAPES}x",
        "model": f"openai:m{ESCAPES}",
        "stage": "check",
        "directory": str(directory),
    }
    records = [
        SampleRecord.model_validate(
            {
                **common,
                "nodeid": f"t.py::test[{HOSTILE_NAME}-{index}]",
                "condition": condition,
                "sample": index,
                "outcome": outcome,
                "reason": f"{ESCAPES}AssertionError: {secret}" if outcome == "failed" else "",
                "speedup": 50.0,
                "speedup_suspicious": True,
                "speedups": [
                    {"kernel_s": 1.0, "reference_s": 50.0, "warnings": [f"{ESCAPES}{secret}"]}
                ],
            }
        )
        for index, (condition, outcome) in enumerate(
            [("baseline", "failed"), (HOSTILE_NAME, "passed")]
        )
    ]
    return statistics(records)


def test_every_writer_cleans_what_it_writes(tmp_path: Path, secret: str) -> None:
    stats = _hostile_stats(tmp_path, secret)
    gates = [f"openai:m {HOSTILE_NAME}: lift +100% {secret}"]
    write_json_report(tmp_path / "r.json", stats)
    write_markdown_report(tmp_path / "r.md", stats, gates)
    write_html_report(tmp_path / "r.html", stats, gates)
    terminal = "\n".join(summary_table(stats, verbose=True))
    written = {
        name: (tmp_path / name).read_text(encoding="utf-8") for name in ("r.json", "r.md", "r.html")
    }
    for name, text in [*written.items(), ("terminal", terminal)]:
        assert secret not in text, name
        assert ("\\[redacted\\]" if name == "r.md" else "[redacted]") in text, name
        for control in ("\x1b", "\x07", "\x9b", "\r"):
            assert control not in text, (name, control)

    document = json.loads(written["r.json"])
    assert document["samples"][0]["reason"] == "AssertionError: [redacted]"
    assert document["samples"][1]["condition"] == HOSTILE_NAME  # newlines stay in JSON strings
    assert document["samples"][0]["speedups"][0]["warnings"] == ["[redacted]"]

    markdown = written["r.md"]
    escaped = markdown_text(HOSTILE_NAME)
    assert f"| openai\\:m | {escaped} | 1/1 |" in markdown
    assert f"- **gate failed**: openai\\:m {escaped}\\: lift \\+100\\% \\[redacted\\]" in markdown
    for line in markdown.splitlines():
        # No line from the data opens a block, and no markup of the data survives unescaped.
        assert not line.startswith(("#", "!", "<script", "> ")) or line == "## pytest-upskill"
        assert "](http" not in line
        assert "<script>" not in line

    html = written["r.html"]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;reply&lt;/b&gt; [redacted]" in html  # the reply file, cleaned
    assert "project/kernel_src/k.cpp" in html  # a file name with escapes, cleaned

    # One line per row: a name cannot start a line of its own that looks like pytest's.
    assert "openai:m  x # Heading ![img](http://evil/x.png) <script>" in terminal
    assert "test_x" in terminal


def _hostile_skill(root: Path, folder: str) -> Path:
    """The examples' cpu-kernels skill in `root/folder/`: its condition is
    `cpu-kernels@folder` beside another copy of it."""
    target = root / folder / "cpu-kernels"
    shutil.copytree(EXAMPLES / "skills" / "cpu-kernels", target)
    return target


def test_a_session_with_hostile_text_writes_clean_reports(
    pytester: pytest.Pytester,
    reference: Path,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The runs are child processes: they inherit the secret through the environment.
    monkeypatch.setenv("DATABASE_URL", SECRET)
    # The model names a source file whose name clears the screen, sets the window title and
    # holds the secret; extraction then fails on it, quoting the name.
    build = reference / "build.toml"
    hostile_src = r"kernel_src/\u001b[2J\u001b]0;pwned\u0007" + SECRET + r"\u009b31m.cpp"
    build.write_text(
        build.read_text().replace(
            'src = ["kernel_src/row_softmax.cpp"]',
            f'src = ["kernel_src/row_softmax.cpp", "{hostile_src}"]',
        )
    )
    folder = "# Heading ![img](https:evil.png) <img src=x onerror=alert(1)> a|b"  # no "/"
    first = _hostile_skill(pytester.path / "skills", "v1")
    second = _hostile_skill(pytester.path / "skills", folder)
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest(
        "--upskill-model=oracle",
        f"--upskill-skill={first}",
        f"--upskill-skill={second}",
        "--upskill-report=r.json",
        "--upskill-markdown=r.md",
        "--upskill-html=r.html",
        "-rA",
        *upskill_args,
    )
    result.assert_outcomes(failed=3)
    stdout = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*upskill [[]extract[]] failed: build.toml names source files the reply does not "
            "hold: kernel_src/[[]redacted[]].cpp*"
        ]
    )
    written = {name: (pytester.path / name).read_text() for name in ("r.json", "r.md", "r.html")}
    for name, text in [*written.items(), ("stdout", stdout)]:
        assert SECRET not in text, name
        # The Markdown summary holds no reasons: only names, and none of them may carry markup.
        assert name == "r.md" or "[redacted]" in text, name
        assert "\x1b" not in text, name
        assert "\x07" not in text, name
        assert "\x9b" not in text, name

    samples = json.loads(written["r.json"])["samples"]
    assert {sample["reason"] for sample in samples} == {
        "build.toml names source files the reply does not hold: kernel_src/[redacted].cpp"
    }
    assert f"cpu-kernels@{folder}" in {sample["condition"] for sample in samples}

    markdown = written["r.md"]
    assert f"| oracle | {markdown_text(f'cpu-kernels@{folder}')} | 0/1 |" in markdown
    assert re.search(r"(?<!\\)<img", markdown) is None  # only as `\<img`, which is text
    assert "](https" not in markdown
    assert not any(line.startswith("# ") for line in markdown.splitlines())

    html = written["r.html"]
    assert "<img src=x" not in html
    assert "cpu-kernels@# Heading ![img](https:evil.png) &lt;img src=x onerror=alert(1)&gt;" in html
