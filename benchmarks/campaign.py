"""A campaign against its critical path: K samples, each a distinct CPU project, from a loopback
model that takes L seconds a reply, through real pytest sessions.

Every reply is the row softmax with `<torch/all.h>` first in both sources and a comment of its
own, so no build is a cache hit. Runs, one after another on this machine:
- today: plain pytest with `--upskill-no-precompiled-headers`, the baseline;
- plain: plain pytest as the plugin is (the precompiled headers made beforehand, once, and
  shown apart: they serve every later campaign on this toolchain);
- `-n 2`: the same under pytest-xdist.
For each it prints the wall time, the critical path measured in that run,
`max(model latency / concurrency, build CPU seconds / cores, kernel run time)`, and their ratio.
Targets (K = 16, L = 1 s): a ratio of at most 1.3, plain and with `-n 2`, and a wall time at
least 3x shorter than today's.
Usage: python benchmarks/campaign.py [--samples 16] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from torch_all import REPO, TEST, all_h_project

sys.path.insert(0, str(REPO / "tests"))

from model_server import ModelServer, Received

CONCURRENCY = 8  # the plugin's default --upskill-concurrency
# Each test's call phase, as the controller's reports give it: the kernels' run time.
CONFTEST = """
import json
from pathlib import Path

CALLS = []

def pytest_runtest_logreport(report):
    if report.when == "call":
        CALLS.append(report.duration)

def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        Path("calls.json").write_text(json.dumps(CALLS))
"""


@dataclass(frozen=True)
class Run:
    name: str
    wall_s: float
    latency_s: float  # the replies' latency, all together
    build_cpu_s: float  # the compilers' CPU seconds, all builds together
    kernel_s: float  # the tests' call phases, all together

    @property
    def critical_s(self) -> float:
        cores = len(os.sched_getaffinity(0))
        return max(self.latency_s / CONCURRENCY, self.build_cpu_s / cores, self.kernel_s)

    @property
    def ratio(self) -> float:
        return self.wall_s / self.critical_s


def session(work: Path, url: str, samples: int, name: str, *args: str) -> Run:
    """One pytest session of `samples` samples; every sample must pass."""
    folder = work / name
    folder.mkdir()
    (folder / "test_campaign.py").write_text(TEST)
    (folder / "conftest.py").write_text(CONFTEST)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:hypothesispytest", f"--upskill-model=openai:loopback@{url}/v1"]
    command += [f"--upskill-samples={samples}", "--upskill-record=off", "--upskill-report=r.json"]
    command += [f"--upskill-build-dir={work / 'builds'}", *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: pytest exited with {done.returncode}\n{done.stdout[-3000:]}")
    records = json.loads((folder / "r.json").read_text())["samples"]
    builds = {record["build_directory"]: record["build_cpu_s"] for record in records}
    return Run(
        name,
        wall,
        sum(record["latency_s"] for record in records),
        sum(builds.values()),
        sum(json.loads((folder / "calls.json").read_text())),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--latency", type=float, default=1.0)
    arguments = parser.parse_args()
    from pytest_upskill.project.extract import render_reply

    counter = itertools.count()

    def answer(request: Received) -> str:  # a project no cache has seen, each time
        return render_reply(all_h_project(f"{time.time_ns()}-{next(counter)}"))

    cores = len(os.sched_getaffinity(0))
    print(f"{arguments.samples} samples, {arguments.latency:g} s a reply, {cores} cores")
    with tempfile.TemporaryDirectory() as tmp, ModelServer(answer, arguments.latency) as server:
        work = Path(tmp)
        start = time.perf_counter()
        session(work, server.url, 2, "headers")  # the second build to want them makes them
        print(f"precompiled headers, made once: {time.perf_counter() - start:.1f} s", flush=True)
        runs = []
        for name, args in (
            ("today", ("--upskill-no-precompiled-headers",)),
            ("plain", ()),
            ("-n 2", ("-n", "2")),
        ):
            run = session(work, server.url, arguments.samples, name.replace(" ", ""), *args)
            runs.append(run)
            print(
                f"{name:>6}: wall {run.wall_s:6.1f} s, critical path {run.critical_s:6.1f} s, "
                f"ratio {run.ratio:.2f} (model {run.latency_s:.1f} s / {CONCURRENCY}, "
                f"build CPU {run.build_cpu_s:.1f} s / {cores}, kernels {run.kernel_s:.2f} s)",
                flush=True,
            )
    today = runs[0]
    for run in runs[1:]:
        print(f"{run.name}: {today.wall_s / run.wall_s:.2f}x shorter than today (target 3x)")
    worst = max(runs[1:], key=lambda run: run.ratio)
    print(
        f"campaign: wall {worst.wall_s:.1f} s, critical path {worst.critical_s:.1f} s, "
        f"ratio {worst.ratio:.2f}"
    )


if __name__ == "__main__":
    main()
