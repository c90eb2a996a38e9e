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
    # --upskill-model-param: sent with the request as they are (seed, top_p, stop, ...).
    params: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines the reply (the task only through its prompt)."""
        fingerprint: dict[str, Any] = {
            "provider": self.spec.provider,
            "model": self.spec.model,
            "base_url": self.spec.base_url and public_url(self.spec.base_url),  # no password
            "system": self.prompt.system,
            "messages": [{"role": "user", "content": self.prompt.user}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "sample": self.sample,
        }
        if self.params:  # only then: recordings made without any keep their names
            fingerprint["params"] = self.params
        return fingerprint


@dataclass(frozen=True)
class Reply:
    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0  # from sending the request to its last token
    cached: bool = False  # replayed from a cassette written before this session
    notes: tuple[str, ...] = ()  # what the provider says about its reply, for the record
    truncated: bool = False  # it stopped at the token limit, not where the model ended it
    # Where the time went, when the reply was streamed: to the first token (the server's queue
    # and the prompt's prefill), then generating; and, before sending, waiting in this process
    # for one of its --upskill-concurrency slots.
    first_token_s: float | None = None
    generation_s: float | None = None
    wait_s: float = 0.0
    started_at: float | None = None  # when it was sent (epoch seconds): requests that overlapped


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

    def check(self) -> tuple[str | None, str | None]:
        """Ask the model's own server, once, before the run: why it cannot be reached (then no
        request is sent), and a warning (a model it does not list); None where there is none."""
        ...

    def close(self) -> None:
        """Drop the connections: a request still in flight ends now, not when the model is done."""
        ...
