"""A campaign over several runs: this run's shard of the samples (`--upskill-shard=I/N`), and
the samples an earlier run of the campaign already has (`--upskill-resume=REPORT`).

Both decide from each item's node id (and a resumed sample from its prompt too), so every
xdist worker (each collects the whole session) and every shard of a CI matrix agrees without
talking to the others. xdist workers get the resumed samples from the controller, which alone
reads the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ..sample import SampleParams

if TYPE_CHECKING:
    from pathlib import Path

    from ..report.results import SampleRecord
    from .state import Session

__all__ = ["Campaign", "shard_of"]


def shard_of(items: list[pytest.Item], shard: tuple[int, int]) -> list[pytest.Item]:
    """Shard I of N: the samples in node id order, dealt out one each to shards 1..N in turn,
    and the other tests dealt the same way. So the shards differ by at most one sample, and
    the samples of each test (its models, conditions and repeats, adjacent in that order) are
    spread over every shard: each shard gets its share of every test's cost."""
    index, count = shard
    upskill = sorted((item for item in items if SampleParams.of(item) is not None), key=_nodeid)
    others = sorted((item for item in items if SampleParams.of(item) is None), key=_nodeid)
    mine = {id(item) for group in (upskill, others) for item in group[index - 1 :: count]}
    return [item for item in items if id(item) in mine]


def _nodeid(item: pytest.Item) -> str:
    return item.nodeid


class Campaign:
    """Registered as a plugin when the session is a shard or goes on with an earlier run."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.settings = session.settings
        # The earlier run's samples that need not run again (they passed or failed), with
        # their prompts' hashes: a test whose prompt changed runs again.
        self.resumed: dict[str, SampleRecord] = {}
        self.prompts: dict[str, str] = {}
        self.skipped: set[str] = set()  # the resumed samples this run did not run, by node id
        if session.workerinput is not None:
            self.prompts = dict(session.workerinput.get("upskill_resumed", {}))
        elif self.settings.resume is not None:
            for record in resumable(self.settings.resume, session):
                self.resumed.setdefault(record.nodeid, record)
            self.prompts = {nodeid: r.prompt_digest for nodeid, r in self.resumed.items()}

    def records(self) -> list[SampleRecord]:
        """The earlier run's samples that stand for this run's: those it did not run again
        because they are its own (same node id, same prompt), not those of tests it left out."""
        return [record for nodeid, record in self.resumed.items() if nodeid in self.skipped]

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["upskill_resumed"] = self.prompts

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist, on the controller: the resumed samples each worker did not run."""
        self.skipped.update(getattr(node, "workeroutput", {}).get("upskill_resumed", []))

    @pytest.hookimpl(tryfirst=True)  # before the records' gates, which need an exit status of 0
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["upskill_resumed"] = sorted(self.skipped)
        # A shard with nothing to run, or a campaign with nothing left, is not a failed run.
        elif session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK

    @pytest.hookimpl(trylast=True)  # after -k and -m: the shards share out what they selected
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        kept = items
        if self.settings.shard is not None:
            kept = shard_of(kept, self.settings.shard)
        if self.prompts:
            done = {id(item) for item in kept if self._done(item)}
            self.skipped.update(item.nodeid for item in kept if id(item) in done)
            kept = [item for item in kept if id(item) not in done]
        if len(kept) < len(items):
            chosen = {id(item) for item in kept}
            config.hook.pytest_deselected(items=[i for i in items if id(i) not in chosen])
            items[:] = kept

    def _done(self, item: pytest.Item) -> bool:
        """Whether the earlier run has this item's sample, asked for with the same prompt."""
        params = SampleParams.of(item)
        digest = self.prompts.get(item.nodeid)
        if params is None or digest is None:
            return False
        return self.session.request(params).prompt.digest() == digest

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        lines = []
        if self.settings.shard is not None:
            index, count = self.settings.shard
            lines.append(
                f"upskill: shard {index} of {count}: the samples in node id order, dealt out to "
                f"the {count} shards in turn"
            )
        if self.settings.resume is not None:
            lines.append(
                f"upskill: going on from {self.settings.resume}: {len(self.resumed)} sample(s) "
                "that passed or failed there are not run again, and are in this run's reports"
            )
        return lines


def resumable(path: Path, session: Session) -> list[SampleRecord]:
    """The samples of the report at `path` that a run of this session need not make again:
    those that passed or failed (an error or a skip is tried again). A report of another
    campaign (other skills, models, settings or version) is a usage error naming the
    difference."""
    from ..report.campaign import ReportInvalid, differences, load_report, run_info

    try:
        report = load_report(path)
    except ReportInvalid as exc:
        raise pytest.UsageError(f"--upskill-resume: {exc}") from None
    if report.run is None:
        raise pytest.UsageError(
            f"--upskill-resume: {path} was written before reports recorded their run: "
            "nothing tells whether its samples are this run's"
        )
    ours = run_info(session.settings, session.skill_digests())
    # Skills that cases files bring are found while collecting, after this: their samples'
    # prompts tell whether they changed.
    theirs = report.run.model_copy(
        update={"skills": {k: v for k, v in report.run.skills.items() if k in ours.skills}}
    )
    different = differences(theirs, ours, (str(path), "this run"))
    if different:
        raise pytest.UsageError(
            f"--upskill-resume: {path} is of another campaign: {'; '.join(different)}"
        )
    # A report names its samples' folders; it is not trusted to choose what the HTML page reads.
    cleared = {"directory": "", "build_directory": "", "transcript": ""}
    return [
        record.model_copy(update=cleared)
        for record in report.records
        if record.outcome in ("passed", "failed")
    ]
