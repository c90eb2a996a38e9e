"""The private parts of pytest the plugin relies on, all here: `tests/test_compat.py` fails
loudly when a pytest release changes one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import pytest

if TYPE_CHECKING:
    from _pytest._io import TerminalWriter

__all__ = [
    "redirect_basetemp",
    "skipped_by_marks",
    "teardown_exact",
    "terminal_writer",
    "tmp_path_factory",
]


def tmp_path_factory(config: pytest.Config) -> pytest.TempPathFactory:
    """The session's `tmp_path_factory`, outside a fixture (at collection, in hooks)."""
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    return factory


def redirect_basetemp(config: pytest.Config, basetemp: Path) -> None:
    """From now on `tmp_path` and `tmp_path_factory` make their folders under `basetemp`."""
    factory = tmp_path_factory(config)
    factory._given_basetemp, factory._basetemp = basetemp, None


def teardown_exact(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Tear down the fixtures `nextitem` does not need, as pytest does after running `item`."""
    item.session._setupstate.teardown_exact(nextitem)


def skipped_by_marks(item: pytest.Item) -> bool:
    """Whether the item's skip and skipif marks skip it (raises what a broken skipif raises)."""
    from _pytest.skipping import evaluate_skip_marks

    return evaluate_skip_marks(item) is not None


def terminal_writer(config: pytest.Config, file: TextIO) -> TerminalWriter:
    """A writer like pytest's, before its reporter exists (`pytest_cmdline_main`)."""
    from _pytest.config import create_terminal_writer

    return create_terminal_writer(config, file)
