"""Recorded replies: one human-readable JSON file per reply, named by a hash of its request.

The hash covers everything that determines a reply (provider, model, base URL, system prompt,
messages, temperature, max tokens and the sample index; in an agent loop, the conversation so far
and the tools), so repeats are distinct samples and a changed prompt is a new recording. Files
hold no API key and no header: only the request's content and the reply (its tool calls too).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ..config import RecordMode
from ..errors import SampleError
from ..paths import write_json_atomically
from ..sanitize import each_string, redacted
from .providers import Reply, Request, ToolCall, Usage

__all__ = ["CASSETTE_SCHEMA", "Cassettes"]

CASSETTE_SCHEMA = "pytest-upskill-cassette/1"


class _RecordedUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class _RecordedReply(BaseModel):
    text: str
    usage: _RecordedUsage
    latency_s: float
    # Recorded since streaming replies were timed; older cassettes have none of these.
    truncated: bool = False
    first_token_s: float | None = None
    generation_s: float | None = None
    # Since agent loops: the tools the model asked to run, each [id, name, arguments JSON text].
    tool_calls: list[tuple[str, str, str]] = []


class Cassette(BaseModel):
    """One file: validated where it enters, since it may have been edited or damaged by hand."""

    schema_: Literal["pytest-upskill-cassette/1"] = Field(alias="schema")
    request: dict[str, Any]
    reply: _RecordedReply


class Cassettes:
    """The replies of `directory`, read and written as `mode` says.

    `none` and `new` replay any recording; `all` and `off` only those written since `since` (this
    session's start), so `all` asks again and `off` (whose directory is a scratch folder shared by
    the session's processes) never replays an older session."""

    def __init__(self, directory: Path, mode: RecordMode, since: float) -> None:
        self.directory = directory
        self.mode = mode
        self.since = since

    def path(self, request: Request) -> Path:
        fingerprint = request.fingerprint()
        canonical = json.dumps(fingerprint, sort_keys=True, ensure_ascii=False)
        # surrogatepass: a model's lone surrogate, sent back in a conversation, is still a key.
        digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        # provider:model, not the label: naming a model keeps its recordings.
        label = re.sub(r"[^\w.-]+", "_", request.spec.identity)[:60]
        return self.directory / f"{label}-{digest}.json"

    def load(self, request: Request) -> Reply | None:
        path = self.path(request)
        try:
            # Written before this session: a replay. Since: another process of this session
            # asked for it, and it is as fresh as if this one had.
            replayed = path.stat().st_mtime < self.since
            if self.mode in ("all", "off") and replayed:
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SampleError("generate", f"cassette {path} cannot be read: {exc}") from None
        try:
            cassette = Cassette.model_validate(data)
        except ValidationError as exc:
            raise SampleError(
                "generate",
                f"cassette {path} is not valid ({exc.errors()[0]['msg']}): delete it to record "
                "it again",
            ) from None
        recorded = cassette.reply
        return Reply(
            text=recorded.text,
            usage=Usage(recorded.usage.input_tokens, recorded.usage.output_tokens),
            latency_s=recorded.latency_s,
            cached=replayed,
            truncated=recorded.truncated,
            first_token_s=recorded.first_token_s,
            generation_s=recorded.generation_s,
            tool_calls=tuple(ToolCall(*call) for call in recorded.tool_calls),
        )

    def save(self, request: Request, reply: Reply) -> None:
        """Write atomically: a reader sees the whole file or none."""
        document = {
            "schema": CASSETTE_SCHEMA,
            # The conversation may quote what a kernel printed: no secret of this process in it.
            "request": each_string(request.fingerprint(), redacted),
            "reply": {
                "text": redacted(reply.text),  # committed with the tests: no secret in it
                "usage": {
                    "input_tokens": reply.usage.input_tokens,
                    "output_tokens": reply.usage.output_tokens,
                },
                "latency_s": round(reply.latency_s, 3),
                "truncated": reply.truncated,
                "first_token_s": _rounded(reply.first_token_s),
                "generation_s": _rounded(reply.generation_s),
                # Arguments hold the files the model writes: no secret in them either.
                "tool_calls": [
                    [call.id, call.name, redacted(call.arguments)] for call in reply.tool_calls
                ],
            },
        }
        write_json_atomically(self.path(request), document)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
