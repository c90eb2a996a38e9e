"""The JSON report of the contract (`--upskill-report`), schema `pytest-upskill/1`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..results import SampleRecord, summarize

__all__ = ["SCHEMA", "write_json_report"]

SCHEMA = "pytest-upskill/1"


def write_json_report(path: Path, records: list[SampleRecord]) -> None:
    """Write the report atomically, so a reader never sees half of it."""
    document = {
        "schema": SCHEMA,
        "samples": [record.model_dump(mode="json") for record in records],
        "summary": [row.model_dump(mode="json") for row in summarize(records)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=2)
        stream.write("\n")
    os.replace(temporary, path)
