"""The agent loop's own overhead per turn, against single-shot samples in the same run.

Every reply comes at once from the loopback model server (tests/model_server.py, through the real
openai SDK) and holds no project, so each turn ends at extract: no model latency, no build. Four
pytest sessions of one upskill test, each in a fresh directory:

- one: `--upskill-samples=1 --upskill-turns=1`, the session's fixed cost and one model call;
- single: `--upskill-samples=K --upskill-turns=1`, K single-shot samples, K model calls;
- feedback: `--upskill-samples=1 --upskill-turns=K --upskill-agent=feedback`, one sample of K
  turns, each reply told that it held no files;
- tools: the same with `--upskill-agent=tools`, each reply one list_files call, whose result is
  the next message.

The loop's first turn is asked as a single-shot sample is, so the loop and single sessions differ
by K - 1 turns against K - 1 samples: the loop's overhead per turn is (loop - single) / (K - 1),
and each arm's cost per call is (arm - one) / (K - 1). All requests go one at a time
(`--upskill-concurrency=1`), as the loop's turns do.

Times are CPU seconds (user + system) of the pytest processes, steadier than wall time on a
shared machine: the loop runs in the pytest process, and the server's share, in this process, is
model latency and not counted (nor is the sandboxed test process's, behind bubblewrap's PID
namespace: it is the same in every session). Wall seconds follow in brackets; where a core is
free they hide much of the calls' cost, which overlaps the start of the session's test process.
Sessions are interleaved, in turn order, and the median kept.
Target: under 50 ms a turn over single-shot, in CPU and in wall time.
Usage: python benchmarks/agent.py [--turns 80] [--repeats 3] [--isolation sandbox process]
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
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from model_server import Answer, ModelServer, Received  # noqa: E402

SUITE = """
import pytest
import torch

@pytest.mark.upskill(
    "Softmax of each row of a 2-D float32 tensor. Expose row_softmax(x).",
    name="row_softmax", backend="cpu",
)
def test_row_softmax(kernel):
    x = torch.randn(8, 33)
    torch.testing.assert_close(kernel.row_softmax(x), torch.softmax(x, dim=-1))
"""
TARGET_MS = 50.0


def answer(request: Received) -> str | Answer:
    """No files, ever: a list_files call where tools are offered, else text."""
    if request.tools:
        return Answer("", [("list_files", {})])
    return "no files here"


@dataclass(frozen=True)
class Arm:
    name: str
    args: tuple[str, ...]
    calls: int  # model requests the session makes


def arms(turns: int) -> list[Arm]:
    loop = (f"--upskill-turns={turns}", "--upskill-samples=1")
    return [
        Arm("one", ("--upskill-samples=1", "--upskill-turns=1"), 1),
        Arm("single", (f"--upskill-samples={turns}", "--upskill-turns=1"), turns),
        Arm("feedback", (*loop, "--upskill-agent=feedback"), turns),
        Arm("tools", (*loop, "--upskill-agent=tools"), turns),
    ]


@dataclass(frozen=True)
class Seconds:
    cpu: float
    wall: float


def session_seconds(server: ModelServer, arm: Arm, isolation: str) -> Seconds:
    """CPU and wall seconds of one pytest session of `arm`, in a directory of its own."""
    directory = Path(tempfile.mkdtemp(prefix="upskill-agent-"))
    try:
        (directory / "test_kernel.py").write_text(SUITE)
        asked = len(server.received)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                # Unrelated plugins that import a lot only add noise here.
                "-p",
                "no:hypothesispytest",
                "-p",
                "no:anyio",
                f"--upskill-model=openai:m@{server.url}/v1",
                "--upskill-record=off",
                "--upskill-concurrency=1",
                f"--upskill-isolation={isolation}",
                f"--upskill-build-dir={directory / 'builds'}",
                *arm.args,
            ],
            cwd=directory,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    # Every sample fails at extract (exit status 1), after exactly the calls the arm expects.
    calls = len(server.received) - asked
    if done.returncode != 1 or "[extract] failed" not in done.stdout or calls != arm.calls:
        raise SystemExit(
            f"the {arm.name} session did not run as planned ({calls} model calls, "
            f"{arm.calls} expected; exit status {done.returncode}):\n{done.stdout[-3000:]}"
            f"{done.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Seconds(cpu, wall)


def measure(server: ModelServer, turns: int, repeats: int, isolation: str) -> dict[str, Seconds]:
    """Median CPU and wall seconds of each arm's session, the arms interleaved."""
    planned = arms(turns)
    session_seconds(server, planned[0], isolation)  # warm-up: file system cache, imports
    times: dict[str, list[Seconds]] = {arm.name: [] for arm in planned}
    for repeat in range(repeats):
        # Rotate which goes first: the first session after a pause is often slower (or faster).
        shift = repeat % len(planned)
        for arm in planned[shift:] + planned[:shift]:
            times[arm.name].append(session_seconds(server, arm, isolation))
    return {
        name: Seconds(
            statistics.median(s.cpu for s in seconds), statistics.median(s.wall for s in seconds)
        )
        for name, seconds in times.items()
    }


def report(isolation: str, turns: int, median: dict[str, Seconds]) -> bool:
    """Print one isolation's figures, CPU first and wall in brackets; whether the target is met."""
    steps = turns - 1

    def ms(seconds: float) -> float:
        return seconds / steps * 1000

    one, single = median["one"], median["single"]
    print(
        f"{isolation}: one sample {one.cpu:.2f} [{one.wall:.2f}] s; {turns} single-shot samples "
        f"{single.cpu:.2f} [{single.wall:.2f}] s: "
        f"{ms(single.cpu - one.cpu):.1f} [{ms(single.wall - one.wall):.1f}] ms a call"
    )
    met = True
    for mode in ("feedback", "tools"):
        loop = median[mode]
        over = Seconds(ms(loop.cpu - single.cpu), ms(loop.wall - single.wall))
        met = met and max(over.cpu, over.wall) < TARGET_MS
        print(
            f"{isolation}: {mode} loop of {turns} turns {loop.cpu:.2f} [{loop.wall:.2f}] s: "
            f"{ms(loop.cpu - one.cpu):.1f} [{ms(loop.wall - one.wall):.1f}] ms a turn, "
            f"{over.cpu:+.1f} [{over.wall:+.1f}] ms a turn over single-shot "
            f"(ratio {loop.cpu / single.cpu:.3f} [{loop.wall / single.wall:.3f}]; "
            f"target < {TARGET_MS:.0f} ms)"
        )
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=80, help="K: turns, and single-shot samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--isolation",
        nargs="+",
        choices=("sandbox", "process"),
        default=["sandbox", "process"],
        help="where builds and kernels would run (the loop needs one of these)",
    )
    options = parser.parse_args()
    if options.turns < 2:
        parser.error(f"--turns must be at least 2, not {options.turns}")
    print("CPU seconds of the pytest processes, [wall seconds]")
    met = True
    with ModelServer(answer=answer) as server:
        for isolation in options.isolation:
            median = measure(server, options.turns, options.repeats, isolation)
            met = report(isolation, options.turns, median) and met
    verdict = "met" if met else "NOT met"
    print(f"target: the loop adds under {TARGET_MS:.0f} ms a turn over single-shot: {verdict}")


if __name__ == "__main__":
    main()
