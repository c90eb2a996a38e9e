"""Agent loops: a sample as a conversation of turns, the model seeing what its project did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ..config import ModelSpec, Settings

__all__ = ["Mode", "agent_mode"]

Mode = Literal["", "tools", "feedback"]  # '': a single reply


def agent_mode(settings: Settings, spec: ModelSpec, kernel_task: bool = True) -> Mode:
    """How samples of `spec` talk to the model: one reply (one turn, or an upskill case, whose
    reply is checked once), tools where the provider calls tools, else feedback. The oracle
    answers its reference whatever it is asked: feedback."""
    if settings.turns <= 1 or not kernel_task or spec.provider == "agent":
        return ""  # an agent CLI runs its own loop: its project is checked once
    if spec.provider == "oracle":
        return "feedback"
    return "tools" if settings.agent in ("auto", "tools") else "feedback"
