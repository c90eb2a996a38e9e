"""The longer fuzz run: tests/test_fuzz.py's property over many more generated replies.

Every reply must become a project or one clear `extract` or `policy` failure, with no file
outside its sample directory. Prints how many replies were tried, how they ended, and the crashes
(any other exception, or a failed check): the target is 0.
Usage: python benchmarks/fuzz.py [--examples 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_fuzz import check_reply, replies


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000)
    examples = parser.parse_args().examples
    endings: Counter[str] = Counter()
    crashes: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(reply=replies)
    def run(reply: str) -> None:
        with tempfile.TemporaryDirectory() as base:
            try:
                reason = check_reply(reply, Path(base))
            except Exception as exc:  # the finding this script is for
                crashes.append(f"{type(exc).__name__}: {exc}"[:300])
                return
        endings["project" if reason is None else reason.split(":")[0][:60]] += 1

    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    tried = sum(endings.values()) + len(crashes)
    print(f"{tried} replies in {seconds:.0f} s; crashes: {len(crashes)}")
    for ending, count in endings.most_common(12):
        print(f"  {count:6d}  {ending}")
    for crash in crashes[:10]:
        print(f"  CRASH {crash}")


if __name__ == "__main__":
    main()
