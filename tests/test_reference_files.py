"""A reference project may hold binary files (a demo's .gif or .mp4, as LTX-Video's does): the
oracle leaves them out of its reply, and the session goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROW_SOFTMAX_TEST
from pytest_upskill.generate.providers.oracle import read_project

# The first bytes of a GIF and of an MP4: neither is UTF-8 text.
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00;"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x00\x00\x08mdat\xde\xad\xbe\xef"
BINARY = {"media/demo.gif": GIF, "media/demo.mp4": MP4}


def test_binary_files_of_a_reference_are_left_out_of_the_oracles_reply(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    text_files = read_project(reference)
    for relative, data in BINARY.items():
        (reference / relative).parent.mkdir(parents=True, exist_ok=True)
        (reference / relative).write_bytes(data)
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest("--upskill-model=oracle", "--upskill-report=r.json", *upskill_args)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*UnicodeDecodeError*")
    result.assert_outcomes(passed=1)
    (sample,) = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert (sample["outcome"], sample["built"]) == ("passed", True)
    # The record says what was left out, so a reader knows the reply is not the whole project.
    assert sample["warnings"] == [
        f"the oracle left out {relative}: not text" for relative in sorted(BINARY)
    ]
    project = Path(sample["directory"]) / "project"
    assert sorted(
        path.relative_to(project).as_posix() for path in project.rglob("*") if path.is_file()
    ) == sorted(text_files)
    left_out: list[str] = []
    assert read_project(reference, left_out) == text_files
    assert left_out == sorted(BINARY)
