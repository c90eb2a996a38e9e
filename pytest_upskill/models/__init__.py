"""Model providers behind one small protocol; `provider_for` picks one per model spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import SampleError

if TYPE_CHECKING:
    from ..config import ModelSpec
    from ..prompt import Prompt
    from ..task import Task

__all__ = ["Provider", "Reply", "Request", "Usage", "provider_for"]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Request:
    """Everything that determines one reply."""

    spec: ModelSpec
    prompt: Prompt
    task: Task
    sample: int


@dataclass(frozen=True)
class Reply:
    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False


class Provider(Protocol):
    """Answers requests for one model; failures are `SampleError`s at stage `generate`."""

    def generate(self, request: Request) -> Reply: ...


def provider_for(spec: ModelSpec) -> Provider:
    if spec.provider == "oracle":
        from .oracle import OracleProvider

        return OracleProvider()
    raise SampleError(
        "generate",
        f"the {spec.provider} provider is not available in this version of pytest-upskill; "
        "use --upskill-model=oracle",
    )
