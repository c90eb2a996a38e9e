"""What the plugin's parts share through pytest's stash. A leaf: it imports none of them, so
none imports another (or `plugin`) to reach what they share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .run.child import ChildServer
    from .sample import Sample, SampleParams
    from .session.samples import SampleRunner
    from .session.state import Session

__all__ = ["build_dir_key", "child_key", "isolated_key", "runner_key", "sample_key", "session_key"]

# On the config: the session's state, the plugin that runs samples, the build cache.
session_key: pytest.StashKey[Session] = pytest.StashKey()
runner_key: pytest.StashKey[SampleRunner] = pytest.StashKey()
build_dir_key: pytest.StashKey[Path] = pytest.StashKey()
child_key: pytest.StashKey[ChildServer] = pytest.StashKey()  # set in a kernel-testing child
# On an item: its sample, and the params whose kernel runs in the sandboxed child (None: here).
sample_key: pytest.StashKey[Sample] = pytest.StashKey()
isolated_key: pytest.StashKey[SampleParams | None] = pytest.StashKey()
