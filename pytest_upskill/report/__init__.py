"""Reports of a session: the terminal tables, the JSON file and the Markdown summary."""

from __future__ import annotations

from .json import write_json_report
from .markdown import write_markdown_report
from .terminal import summary_table

__all__ = ["summary_table", "write_json_report", "write_markdown_report"]
