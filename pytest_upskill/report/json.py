"""The JSON report of the contract (`--upskill-report`), schema `pytest-upskill/1`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..environ import withheld_secrets
from ..paths import write_json_atomically
from ..sanitize import clean_text, each_string
from .results import Statistics

if TYPE_CHECKING:
    from .campaign import RunInfo

__all__ = ["SCHEMA", "write_json_report"]

SCHEMA = "pytest-upskill/1"


def write_json_report(path: Path, stats: Statistics, run: RunInfo | None = None) -> None:
    """Write the report atomically, so a reader never sees half of it. Every string in it is
    cleaned (`clean_text`): reasons and warnings quote models, builds and providers, and tools
    that print the report must not run a terminal sequence or show a secret. `run`: what
    must agree with the runs it may be merged with (`campaign`)."""
    document: dict[str, object] = {"schema": SCHEMA}
    if run is not None:
        document["run"] = run.model_dump(mode="json")
    document |= {
        "samples": [record.model_dump(mode="json") for record in stats.records],
        "summary": [row.model_dump(mode="json", exclude={"test"}) for row in stats.summary],
        "lift": [row.model_dump(mode="json") for row in stats.lift],
        "tests": [row.model_dump(mode="json") for row in stats.by_test],
        "comparisons": [row.model_dump(mode="json") for row in stats.comparisons],
    }
    if stats.lift_at_turn_1:  # an agent loop's: the lift before any feedback
        document["lift_at_turn_1"] = [row.model_dump(mode="json") for row in stats.lift_at_turn_1]
    secrets = withheld_secrets()  # one read of the environment
    write_json_atomically(
        path, each_string(document, lambda text: clean_text(text, secrets=secrets))
    )
