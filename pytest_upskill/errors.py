"""Typed failures of one sample: each carries the stage it happened in."""

from __future__ import annotations

from typing import Literal

from .sanitize import clean_text

__all__ = ["STAGES", "SampleError", "SampleFailed", "SampleSkipped", "Stage", "UpskillIssue"]

Stage = Literal["generate", "extract", "policy", "build", "load", "check"]
STAGES: tuple[Stage, ...] = ("generate", "extract", "policy", "build", "load", "check")


class UpskillIssue(Exception):
    """Something that ended a sample before the user's assertions ran."""

    outcome: Literal["failed", "error", "skipped"]

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(stage, reason)
        self.stage = stage
        self.reason = reason

    # What pytest prints and JUnit stores: `reason` may quote the model, its build or a provider.
    def __str__(self) -> str:
        return f"upskill [{self.stage}] failed: {clean_text(self.reason)}"


class SampleFailed(UpskillIssue):
    """The model's work fell short (it does not build, has no files, ...): counts against it."""

    outcome = "failed"


class SampleError(UpskillIssue):
    """The harness or the provider failed: not the model's fault, kept out of pass rates."""

    outcome = "error"

    def __str__(self) -> str:
        return f"upskill [{self.stage}] error: {clean_text(self.reason)}"


class SampleSkipped(UpskillIssue):
    """This machine cannot go further (no nvcc, no GPU): the test is skipped with the reason."""

    outcome = "skipped"

    def __str__(self) -> str:
        return clean_text(self.reason)
