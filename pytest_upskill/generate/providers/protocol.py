"""The one small protocol every provider speaks: a request in, a reply (with usage) out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ...config import public_url

if TYPE_CHECKING:
    from ...config import ModelSpec
    from ...task import Task, TextTask
    from ..prompt import Prompt

__all__ = ["MAX_RETRIES", "Provider", "Reply", "Request", "Usage"]

# Rate limits, overload and 5xx are retried this many times, with the SDKs' backoff (which
# honours the server's retry-after).
MAX_RETRIES = 4


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Request:
    """One reply to ask for: the model, the messages, the sampling settings, the repeat."""

    spec: ModelSpec
    prompt: Prompt
    task: Task | TextTask
    sample: int
    temperature: float | None = None
    max_tokens: int = 16384

    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines the reply (the task only through its prompt)."""
        return {
            "provider": self.spec.provider,
            "model": self.spec.model,
            "base_url": self.spec.base_url and public_url(self.spec.base_url),  # no password
            "system": self.prompt.system,
            "messages": [{"role": "user", "content": self.prompt.user}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "sample": self.sample,
        }


@dataclass(frozen=True)
class Reply:
    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False  # replayed from a cassette
    notes: tuple[str, ...] = ()  # what the provider says about its reply, for the record


class Provider(Protocol):
    """Answers requests for one model, from any thread; failures are `SampleError`s at stage
    `generate`."""

    def generate(self, request: Request) -> Reply: ...

    def missing_key(self) -> str | None:
        """Why this provider cannot send requests (no API key), in one line; None if it can."""
        ...

    def prepare(self) -> None:
        """Import the SDK and make the client now, so the first request need not wait for it."""
        ...

    def close(self) -> None:
        """Drop the connections: a request still in flight ends now, not when the model is done."""
        ...
