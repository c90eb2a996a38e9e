"""The JSON report of the contract (`--upskill-report`), schema `pytest-upskill/1`."""

from __future__ import annotations

from pathlib import Path

from ..paths import write_json_atomically
from ..results import SampleRecord, lift, summarize, summarize_by_test

__all__ = ["SCHEMA", "write_json_report"]

SCHEMA = "pytest-upskill/1"


def write_json_report(path: Path, records: list[SampleRecord]) -> None:
    """Write the report atomically, so a reader never sees half of it."""
    summary = summarize(records)
    document = {
        "schema": SCHEMA,
        "samples": [record.model_dump(mode="json") for record in records],
        "summary": [row.model_dump(mode="json", exclude={"test"}) for row in summary],
        "lift": [row.model_dump(mode="json") for row in lift(summary)],
        "tests": [row.model_dump(mode="json") for row in summarize_by_test(records)],
    }
    write_json_atomically(path, document)
