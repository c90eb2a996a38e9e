"""Model latency must not serialize a session: N samples against a slow loopback model server.

A plain `pytest` run (no xdist) of one upskill test with `--upskill-samples=N` asks the loopback
server in tests/model_server.py, which takes `latency` seconds per reply, through the real openai
SDK. It runs twice: with the default concurrency (8 replies in flight), then with 1, the serial
baseline, so the ratio comes from one machine at one time.
Target: 64 samples at 1 s each in at most 10 s of wall time.
Usage: python benchmarks/models.py [--samples 64] [--latency 1.0] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from model_server import ModelServer  # noqa: E402

SUITE = """
import pytest

@pytest.mark.upskill("Write any kernel.", name="anything", backend="cpu")
def test_reply(upskill_sample):
    assert upskill_sample.reply == "a reply"
"""


def session_seconds(directory: Path, url: str, samples: int, concurrency: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",  # the test extra's hypothesis costs ~1 s to start: not ours
            f"--upskill-model=openai:loopback@{url}/v1",
            f"--upskill-samples={samples}",
            f"--upskill-concurrency={concurrency}",
            "--upskill-record=off",
        ],
        cwd=directory,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    arguments = parser.parse_args()
    samples = arguments.samples
    with (
        tempfile.TemporaryDirectory() as tmp,
        ModelServer(answer=lambda request: "a reply", latency_s=arguments.latency) as server,
    ):
        Path(tmp, "test_latency.py").write_text(SUITE)
        concurrent = session_seconds(Path(tmp), server.url, samples, arguments.concurrency)
        most = server.most_in_flight
        serial = session_seconds(Path(tmp), server.url, samples, 1)
    print(f"{samples} samples, {arguments.latency:g} s per reply, plain pytest run:")
    print(f"  concurrency {arguments.concurrency}: {concurrent:.1f} s ({most} in flight at most)")
    print(f"  concurrency 1 (serial): {serial:.1f} s")
    print(f"  serial / concurrent: {serial / concurrent:.1f}x (target for 64 x 1 s: at most 10 s)")


if __name__ == "__main__":
    main()
