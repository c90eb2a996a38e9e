"""A campaign over several runs: this run's shard of the samples (`--upskill-shard=I/N`), and
the samples an earlier run of the campaign already has (`--upskill-resume=REPORT`).

Both decide from each item's node id alone, so every xdist worker (each collects the whole
session) and every shard of a CI matrix agrees without talking to the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..sample import SampleParams

if TYPE_CHECKING:
    from .state import Session

__all__ = ["Campaign", "shard_of"]


def shard_of(items: list[pytest.Item], shard: tuple[int, int]) -> list[pytest.Item]:
    """Shard I of N: the samples in node id order, dealt out one each to shards 1..N in turn,
    and the other tests dealt the same way. So the shards differ by at most one sample, and
    the samples of each test (its models, conditions and repeats, adjacent in that order) are
    spread over every shard: each shard gets its share of every test's cost."""
    index, count = shard
    upskill = sorted((item for item in items if _params(item) is not None), key=_nodeid)
    others = sorted((item for item in items if _params(item) is None), key=_nodeid)
    mine = {id(item) for group in (upskill, others) for item in group[index - 1 :: count]}
    return [item for item in items if id(item) in mine]


def _nodeid(item: pytest.Item) -> str:
    return item.nodeid


def _params(item: pytest.Item) -> SampleParams | None:
    callspec = getattr(item, "callspec", None)
    params = callspec.params.get("_upskill_params") if callspec else None
    params = params or getattr(item, "sample_params", None)  # an upskill test case's item
    return params if isinstance(params, SampleParams) else None


class Campaign:
    """Registered as a plugin when the session is a shard or goes on with an earlier run."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.settings = session.settings

    @pytest.hookimpl(trylast=True)  # after -k and -m: the shards share out what they selected
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        kept = items
        if self.settings.shard is not None:
            kept = shard_of(kept, self.settings.shard)
        if len(kept) < len(items):
            chosen = {id(item) for item in kept}
            config.hook.pytest_deselected(items=[i for i in items if id(i) not in chosen])
            items[:] = kept

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        if self.settings.shard is None or self.session.child:
            return []
        index, count = self.settings.shard
        return [
            f"upskill: shard {index} of {count}: the samples in node id order, dealt out to the "
            f"{count} shards in turn"
        ]
