"""Builds ahead, in real sessions with the real compiler: a sample's build starts when its
reply arrives, and none outlives the session."""

from __future__ import annotations

import json
import os
import re
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import ROW_SOFTMAX_TEST, plant

KERNEL = "kernel_src/row_softmax.cpp"
# The first test's kernel runs for a while; the second test's project is another one.
SLOW_FIRST = ROW_SOFTMAX_TEST.replace(
    "def test_row_softmax(kernel):", "def test_a_slow(kernel):\n    import time; time.sleep(12)"
) + ROW_SOFTMAX_TEST.replace("def test_row_softmax", "def test_b_other").replace(
    'reference="solutions/row_softmax"', 'reference="solutions/broken"'
)


def fresh(reference: Path, broken: Path) -> None:
    """Both projects new to every cache, and different from each other."""
    for project in (reference, broken):
        plant(project, KERNEL, "#include <cmath>", f"#include <cmath>\n// {uuid.uuid4()}")


def made_at(samples: list[dict[str, Any]]) -> dict[str, float]:
    """When each test's build was made, from the result.json the build left in the cache."""
    return {
        sample["test"]: json.loads(Path(sample["build_directory"], "result.json").read_text())[
            "made_at"
        ]
        for sample in samples
    }


@pytest.mark.parametrize("jobs", ["2", "0"])
def test_a_later_samples_build_runs_while_an_earlier_test_runs(
    pytester: pytest.Pytester, reference: Path, broken: Path, upskill_args: list[str], jobs: str
) -> None:
    fresh(reference, broken)
    pytester.makepyfile(SLOW_FIRST)
    args = ["--upskill-model=oracle", "--upskill-report=r.json", f"--upskill-build-jobs={jobs}"]
    pytester.runpytest(*args, *upskill_args).assert_outcomes(passed=2)
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    made = made_at(samples)
    assert all(not sample["build_cached"] for sample in samples)
    if jobs == "0":  # built when its test ran: after the first test's 12 s
        assert made["test_b_other"] > made["test_a_slow"] + 12
    else:
        assert made["test_b_other"] < made["test_a_slow"] + 12


def test_a_models_reply_is_built_when_it_arrives(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    """Through `reply_arrived`: each reply a new project, so no build is a cache hit."""
    from model_server import ModelServer, Received

    from conftest import EXAMPLES
    from pytest_upskill.generate.providers.oracle import read_project
    from pytest_upskill.project.extract import render_reply

    files = read_project(EXAMPLES / "solutions" / "row_softmax")

    def answer(request: Received) -> str:
        marked = files[KERNEL].replace("#include <cmath>", f"#include <cmath>\n// {uuid.uuid4()}")
        return render_reply({**files, KERNEL: marked})

    # No reference (the model writes the projects), and a task of its own for each test.
    first, second = re.sub(r'reference="[^"]*",', "", SLOW_FIRST).split("def test_a_slow")
    pytester.makepyfile(f"{first}def test_a_slow{second.replace('Softmax', 'The softmax')}")
    with ModelServer(answer=answer) as server:
        args = [f"--upskill-model=openai:m@{server.url}/v1", "--upskill-report=r.json"]
        pytester.runpytest(*args, "--upskill-build-jobs=2", *upskill_args).assert_outcomes(passed=2)
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    made = made_at(samples)
    assert all(not sample["build_cached"] for sample in samples)
    assert made["test_b_other"] < made["test_a_slow"] + 12


SLOW_CXX = """#!/bin/sh
# A compiler that takes five minutes over a project marked SLOW_BUILD.
if grep -qs SLOW_BUILD src/kernel_src/*.cpp; then sleep 300; fi
exec {cxx} "$@"
"""


def test_the_sessions_end_kills_builds_ahead_and_removes_their_workspaces(
    pytester: pytest.Pytester,
    reference: Path,
    broken: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh(reference, broken)
    plant(broken, KERNEL, "#include <cmath>", "#include <cmath>\n// SLOW_BUILD")
    # The first test fails at once: with -x, the session ends while the other builds ahead.
    pytester.makepyfile(SLOW_FIRST.replace("time.sleep(12)", "assert False, 'planted'"))
    cxx = pytester.path / "bin" / "slow-c++"
    cxx.parent.mkdir()
    cxx.write_text(SLOW_CXX.format(cxx="/usr/bin/c++"))
    cxx.chmod(cxx.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(cxx))
    cache = pytester.path / "cache"
    start = time.monotonic()
    result = pytester.runpytest_subprocess(
        "--upskill-model=oracle",
        f"--upskill-build-dir={cache}",
        "--upskill-no-precompiled-headers",  # none for this compiler: the test is about builds
        "-x",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(failed=1)
    # Not the slow build's five minutes. The other build, ahead at a low priority with one job,
    # takes a minute or more on a loaded machine of 2 cores.
    assert time.monotonic() - start < 200
    survivors = [path for path in Path("/proc").glob("[0-9]*/cmdline") if str(cache) in _read(path)]
    assert survivors == []
    leftovers = [path.name for path in cache.iterdir() if path.name.startswith(".")]
    assert leftovers == []  # no workspace of a killed build
    built = {path.parent.name for path in cache.glob("*/result.json")}
    assert len(built) == 1  # the failed test's; not the cancelled one


def _read(cmdline: Path) -> str:
    try:
        return cmdline.read_bytes().decode(errors="replace")
    except OSError:  # the process ended meanwhile
        return ""


def test_under_xdist_every_sample_passes_and_no_workspace_is_left(
    pytester: pytest.Pytester, reference: Path, broken: Path
) -> None:
    fresh(reference, broken)
    pytester.makepyfile(SLOW_FIRST.replace("time.sleep(12)", "pass"))
    cache = pytester.path / "cache"
    result = pytester.runpytest_subprocess(
        "--upskill-model=oracle",
        "--upskill-samples=2",
        f"--upskill-build-dir={cache}",
        "--upskill-no-precompiled-headers",  # a cache of its own: the test is about builds
        "-n",
        "2",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=4)
    assert [path.name for path in cache.iterdir() if path.name.startswith(".")] == []
    assert len(list(cache.glob("*/result.json"))) == 2  # one build per project


def test_build_jobs_must_be_a_whole_number(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--upskill-model=oracle", "--upskill-build-jobs=-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--upskill-build-jobs: expected a whole number (0: no builds ahead), got '-1'*"]
    )


def test_the_pool_shares_the_jobs_between_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_upskill.config import Settings
    from pytest_upskill.session.ahead import BuildAhead

    def shape(jobs: int | None, processes: int, samples: int = 100) -> tuple[int, int | None]:
        ahead = BuildAhead(
            Settings(build_jobs=jobs), None, Path("/nonexistent"), processes, samples
        )
        return ahead.builds, ahead.jobs

    # Samples enough: a build per job, so no job idles while a build's longer source compiles.
    assert shape(16, 1) == (16, 1)
    assert shape(16, 2) == (8, 1)
    assert shape(2, 1) == (2, 1)
    assert shape(2, 2) == (1, 1)
    assert shape(1, 4) == (1, 1)
    # Fewer samples than jobs: their builds get the jobs between them.
    assert shape(16, 1, samples=1) == (1, 16)
    assert shape(16, 1, samples=3) == (3, 5)
    assert shape(16, 2, samples=4) == (4, 2)
    assert shape(2, 1, samples=1) == (1, 2)
    assert shape(2, 1, samples=0) == (1, 2)
    monkeypatch.delenv("MAX_JOBS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert shape(None, 1) == (cores, 1)
    assert shape(None, 1, samples=1) == (1, cores)
    monkeypatch.setenv("MAX_JOBS", "6")  # as torch's extension builds read it
    assert shape(None, 1) == (6, 1)
    assert shape(None, 1, samples=2) == (2, 3)
