"""A small campaign for the tests of runs over several machines and runs: the write-good-pr
skill's two cases, three samples each, from a loopback model that knows the answers only with
the skill in its prompt."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from model_server import ModelServer
from test_upskill_cases import KEY, PR_CASES, answers_with_skill, write_good_pr

__all__ = ["pr_campaign"]


@contextmanager
def pr_campaign(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, upskill_args: list[str]
) -> Iterator[tuple[ModelServer, list[str]]]:
    """The running model server, and the arguments every run of the campaign gets."""
    write_good_pr(pytester.path, PR_CASES)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with answers_with_skill(PR_CASES, '<skill name="write-good-pr">') as server:
        yield (
            server,
            [
                f"--upskill-model=openai:gpt-loopback@{server.url}/v1",
                "--upskill-skill=skills/write-good-pr",
                "--upskill-samples=3",
                *upskill_args,
            ],
        )
