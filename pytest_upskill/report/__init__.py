"""Reports of a session: the terminal table and the JSON file."""

from __future__ import annotations

from .json import write_json_report
from .terminal import summary_table

__all__ = ["summary_table", "write_json_report"]
