"""Overhead of pytest-upskill, each figure against a plain pytest run in the same script.

1. Start-up when unused: a one-test suite with the plugin installed but no model, against the
   same run with the plugin disabled (`-p no:upskill`). Target: under 30 ms.
2. Per-item overhead with a warm build cache: N oracle samples of the example row softmax, against
   N plain parametrized tests with the same test body. Target: under 20 ms per item.
3. What the sandbox costs a sample: the same N oracle samples with kernels in the sandboxed
   child (`--upskill-isolation=sandbox`, the default: one fork per sample) against the pytest
   process (`off`), in wall seconds. Target: at most 150 ms per sample, the child's start-up
   included.
4. What the sandbox costs a cold build: the example row softmax, each time with a comment that
   no build has seen, built in the sandbox against without it. Target: at most 1.2x.

Times are CPU seconds of the child pytest processes; runs are interleaved and the median kept,
because these machines are noisy.
Usage: python benchmarks/overhead.py [--items 60] [--repeats 7] [--builds 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pytest_upskill.run.sandbox import Mechanism, mechanism

REPO = Path(__file__).resolve().parents[1]
BODY = """
    x = torch.randn(8, 33)
    torch.testing.assert_close({call}, torch.softmax(x, dim=-1))
"""

UPSKILL_SUITE = """
import pytest
import torch

@pytest.mark.upskill("Softmax of each row.", name="row_softmax", backend="cpu",
                     reference="solutions/row_softmax")
def test_row_softmax(kernel):""" + BODY.format(call="kernel.row_softmax(x)")

PLAIN_SUITE = """
import pytest
import torch

@pytest.mark.parametrize("index", range({items}))
def test_row_softmax(index):""" + BODY.format(call="torch.softmax(x, dim=-1)")


def pytest_seconds(directory: Path, *args: str, wall: bool = False) -> float:
    """CPU seconds (user + system) of one pytest run: steadier than wall time on shared machines.
    `wall`: wall seconds instead, for runs whose processes do not all report their CPU time to
    pytest (the sandbox's, behind bubblewrap's PID namespace)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if wall:
        return time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cold_build(cache: Path, sandbox: Mechanism | None) -> float:
    """Wall seconds of one cold build of the example row softmax (a comment no build has seen
    makes it new)."""
    from pytest_upskill.generate.providers.oracle import read_project
    from pytest_upskill.project.build import build_project
    from pytest_upskill.project.layout import load_project, write_project
    from pytest_upskill.task import Task

    files = read_project(REPO / "examples" / "solutions" / "row_softmax")
    files["kernel_src/row_softmax.cpp"] += f"// {uuid.uuid4()}\n"
    root = Path(tempfile.mkdtemp(prefix="upskill-cold-")) / "project"
    project = load_project(root, write_project(files, root), "row_softmax")
    task = Task(prompt="t", name="row_softmax", backend="cpu")
    start = time.perf_counter()
    build = build_project(project, task, cache, timeout_s=900, sandbox=sandbox)
    seconds = time.perf_counter() - start
    shutil.rmtree(root.parent, ignore_errors=True)
    assert build.ok, build.reason
    return seconds


def compare(
    repeats: int, measured: Callable[[], float], baseline: Callable[[], float]
) -> tuple[float, float]:
    measured(), baseline()  # warm-up: build cache, file system cache, bytecode
    times: dict[str, list[float]] = {"measured": [], "baseline": []}
    for repeat in range(repeats):
        # Alternate which goes first: the second run of a pair is often faster (or slower).
        order = ("measured", "baseline") if repeat % 2 == 0 else ("baseline", "measured")
        for name in order:
            times[name].append(measured() if name == "measured" else baseline())
    return statistics.median(times["measured"]), statistics.median(times["baseline"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--builds", type=int, default=3, help="cold builds each way")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="upskill-bench-"))
    try:
        unused = work / "unused"
        unused.mkdir()
        (unused / "test_one.py").write_text("def test_one():\n    pass\n")
        # Unrelated plugins that import a lot (hypothesis takes ~1 s) only add noise here.
        quiet = ("-p", "no:hypothesispytest", "-p", "no:anyio")
        with_plugin, without = compare(
            options.repeats * 3,
            lambda: pytest_seconds(unused, *quiet),
            lambda: pytest_seconds(unused, *quiet, "-p", "no:upskill"),
        )
        startup_ms = (with_plugin - without) * 1000
        print(
            f"start-up, plugin unused: {with_plugin * 1000:.0f} ms vs {without * 1000:.0f} ms "
            f"without it: +{startup_ms:.1f} ms (ratio {with_plugin / without:.3f}; target < 30 ms)"
        )

        upskill, plain = work / "upskill", work / "plain"
        upskill.mkdir()
        plain.mkdir()
        shutil.copytree(
            REPO / "examples" / "solutions" / "row_softmax", upskill / "solutions" / "row_softmax"
        )
        (upskill / "test_kernel.py").write_text(UPSKILL_SUITE)
        (plain / "test_kernel.py").write_text(PLAIN_SUITE.format(items=options.items))
        build_dir = work / "builds"

        def oracle_run(isolation: str, wall: bool = False) -> float:
            return pytest_seconds(
                upskill,
                "--upskill-model=oracle",
                f"--upskill-samples={options.items}",
                f"--upskill-build-dir={build_dir}",
                f"--upskill-isolation={isolation}",
                wall=wall,
            )

        in_process, baseline = compare(
            options.repeats, lambda: oracle_run("off"), lambda: pytest_seconds(plain)
        )
        per_item_ms = (in_process - baseline) / options.items * 1000
        print(
            f"{options.items} oracle items, warm build cache, in process: {in_process:.2f} s vs "
            f"{baseline:.2f} s for plain tests: +{per_item_ms:.1f} ms per item "
            f"(ratio {in_process / baseline:.3f}; target < 20 ms)"
        )
        sandboxed, in_process = compare(
            options.repeats,
            lambda: oracle_run("sandbox", wall=True),
            lambda: oracle_run("off", wall=True),
        )
        print(
            f"{options.items} oracle items in the sandbox, wall time: {sandboxed:.2f} s vs "
            f"{in_process:.2f} s in process: +{sandboxed - in_process:.2f} s a session "
            f"(ratio {sandboxed / in_process:.3f}), "
            f"{(sandboxed - in_process) / options.items * 1000:.1f} ms per sample "
            "(target <= 150 ms)"
        )
        sandbox = mechanism()
        if sandbox is None:
            print("cold builds: no sandbox works on this machine")
            return
        cold_sandboxed, cold_plain = compare(
            max(options.builds - 1, 1),
            lambda: cold_build(build_dir, sandbox),
            lambda: cold_build(build_dir, None),
        )
        print(
            f"cold build of the row softmax in the sandbox ({sandbox}): {cold_sandboxed:.2f} s vs "
            f"{cold_plain:.2f} s without: ratio {cold_sandboxed / cold_plain:.3f} (target <= 1.2)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
