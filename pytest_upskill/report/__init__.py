"""Reports of a session: the terminal tables, and the JSON, Markdown and HTML files."""

from __future__ import annotations

from .html import write_html_report
from .json import write_json_report
from .markdown import write_markdown_report
from .terminal import summary_table

__all__ = ["summary_table", "write_html_report", "write_json_report", "write_markdown_report"]
