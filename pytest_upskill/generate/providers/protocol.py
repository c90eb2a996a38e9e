"""The one small protocol every provider speaks: a request in, a reply (with usage) out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ...config import public_url

if TYPE_CHECKING:
    from ...config import ModelSpec
    from ...skill import Skill
    from ...task import Task, TextTask
    from ..prompt import Prompt

__all__ = [
    "MAX_RETRIES",
    "Message",
    "Provider",
    "Reply",
    "Request",
    "Tool",
    "ToolCall",
    "ToolResult",
    "Usage",
]

# Rate limits, overload and 5xx are retried this many times, with the SDKs' backoff (which
# honours the server's retry-after).
MAX_RETRIES = 4


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class ToolCall:
    """One tool the model asked to run, with its arguments as the model wrote them (JSON)."""

    id: str
    name: str
    arguments: str  # JSON text: parsed by whoever runs the tool, which may find it malformed


@dataclass(frozen=True)
class ToolResult:
    """What running one tool call gave back to the model."""

    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: its name, what it does, its arguments' JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Message:
    """A turn of a conversation after the task: the model's (its text and tool calls), or the
    session's (feedback text, or the results of the model's tool calls)."""

    role: Literal["assistant", "user"]
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()  # the assistant's
    tool_results: tuple[ToolResult, ...] = ()  # the user's, answering the calls before

    def transcript(self) -> str:
        """The message as a person reads it, in a sample's prompt.md."""
        parts = [self.text] if self.text else []
        parts += [f"[calls {call.name}({call.arguments})]" for call in self.tool_calls]
        for result in self.tool_results:
            label = "error" if result.is_error else "result"
            parts.append(f"[{label} of {result.call_id}]\n{result.content}")
        return "\n\n".join(parts)

    def fingerprint(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"role": self.role, "content": self.text}
        if self.tool_calls:
            shown["tool_calls"] = [[c.id, c.name, c.arguments] for c in self.tool_calls]
        if self.tool_results:
            shown["tool_results"] = [[r.call_id, r.content, r.is_error] for r in self.tool_results]
        return shown


@dataclass(frozen=True)
class Request:
    """One reply to ask for: the model, the messages, the sampling settings, the repeat. In an
    agent loop, `history` holds the conversation after the task's own message, and `tools`
    what the model may call."""

    spec: ModelSpec
    prompt: Prompt
    task: Task | TextTask | None  # None where it is asked for by its prompt alone (a relay)
    sample: int
    temperature: float | None = None
    max_tokens: int = 16384
    # --upskill-model-param: sent with the request as they are (seed, top_p, stop, ...).
    params: dict[str, Any] = field(default_factory=dict)
    history: tuple[Message, ...] = ()
    tools: tuple[Tool, ...] = ()
    # An agent CLI's skill condition: the skill installed in its workspace (not in the prompt),
    # and the hash of its files, which decides the reply as a prompt's skill block does.
    install: Skill | None = None
    install_digest: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines the reply (the task only through its prompt)."""
        fingerprint: dict[str, Any] = {
            "provider": self.spec.provider,
            "model": self.spec.model,
            "base_url": self.spec.base_url and public_url(self.spec.base_url),  # no password
            "system": self.prompt.system,
            "messages": [
                {"role": "user", "content": self.prompt.user},
                *(message.fingerprint() for message in self.history),
            ],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "sample": self.sample,
        }
        if self.params:  # only then: recordings made without any keep their names
            fingerprint["params"] = self.params
        if self.tools:
            fingerprint["tools"] = [[t.name, t.description, t.parameters] for t in self.tools]
        if self.install is not None:
            fingerprint["installed_skill"] = [self.install.name, self.install_digest]
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
    tool_calls: tuple[ToolCall, ...] = ()  # what the model asked to run, in order
    # An agent CLI's: the project it left in its workspace, the cost its own output reported,
    # where its JSON events are, and the limit that stopped it ('' if none).
    files: dict[str, str] | None = None
    reported_cost_usd: float | None = None
    transcript: str = ""
    limit_note: str = ""


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
