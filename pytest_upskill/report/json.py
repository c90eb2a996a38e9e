"""The JSON report of the contract (`--upskill-report`), schema `pytest-upskill/1`."""

from __future__ import annotations

from pathlib import Path

from ..paths import write_json_atomically
from ..results import Statistics

__all__ = ["SCHEMA", "write_json_report"]

SCHEMA = "pytest-upskill/1"


def write_json_report(path: Path, stats: Statistics) -> None:
    """Write the report atomically, so a reader never sees half of it."""
    document = {
        "schema": SCHEMA,
        "samples": [record.model_dump(mode="json") for record in stats.records],
        "summary": [row.model_dump(mode="json", exclude={"test"}) for row in stats.summary],
        "lift": [row.model_dump(mode="json") for row in stats.lift],
        "tests": [row.model_dump(mode="json") for row in stats.by_test],
        "comparisons": [row.model_dump(mode="json") for row in stats.comparisons],
    }
    write_json_atomically(path, document)
