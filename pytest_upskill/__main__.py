"""`python -m pytest_upskill COMMAND`: what works on reports after the runs (`merge`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import merge

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_upskill",
        description="Commands of pytest-upskill that work on its reports.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    merge.add_arguments(
        commands.add_parser(
            "merge",
            help="merge the JSON reports of runs of one campaign into one run's reports",
            description="Merge the JSON reports of runs of one campaign (shards, or runs of a "
            "share of the samples each) into the reports one run over all the samples would "
            "have written. Exits 0, 1 when a gate fails, 2 when the reports cannot be merged.",
        )
    )
    args = parser.parse_args(argv)
    return merge.run(args)


if __name__ == "__main__":
    sys.exit(main())
