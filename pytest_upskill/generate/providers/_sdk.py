"""What the SDK-backed providers share: one client per model, made once, and failures in one
line with the same words for every provider."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Generic, TypeVar

from ...config import ModelSpec, public_url
from ...errors import SampleError
from .protocol import MAX_RETRIES, Reply, ToolCall, Usage

__all__ = ["SDKProvider", "Stopwatch", "arguments_object", "sdk_error", "sdk_problem"]

ClientT = TypeVar("ClientT", bound=Any)

# Statuses the SDKs retry: a failure with one of these has outlived the retries.
_RETRIED = {408, 409, 429}


class SDKProvider(Generic[ClientT]):
    """A provider over an official SDK client, shared by every thread (one connection pool)."""

    key_variables: tuple[str, ...] = ()  # any one of them set is a key

    def __init__(self, spec: ModelSpec, timeout_s: float = 600.0) -> None:
        self.spec = spec
        self.timeout_s = timeout_s  # one request's, each retry's own
        self._client: ClientT | None = None
        self._lock = threading.Lock()

    def needs_key(self) -> bool:
        return True

    def missing_key(self) -> str | None:
        if not self.needs_key() or any(os.environ.get(v) for v in self.key_variables):
            return None
        return (
            f"{self.key_variables[0]} is not set: export it to ask {self.spec.provider} models, "
            "or replay recorded replies with --upskill-record=none"
        )

    def prepare(self) -> None:
        self.client()

    def check(self) -> tuple[str | None, str | None]:
        return None, None  # the providers' own APIs: their SDKs say what goes wrong

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()

    def client(self) -> ClientT:
        with self._lock:
            if self._client is None:
                self._client = self.make_client()
            return self._client

    def make_client(self) -> ClientT:
        raise NotImplementedError


class Stopwatch:
    """One streamed request's times: to its first token, then to its last."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.started_at = time.time()
        self.first: float | None = None

    def token(self) -> None:
        """Something of the reply arrived: text, or a piece of a tool call."""
        if self.first is None:
            self.first = time.perf_counter()

    def reply(
        self, text: str, usage: Usage, truncated: bool, tool_calls: tuple[ToolCall, ...] = ()
    ) -> Reply:
        end = time.perf_counter()
        first = self.first
        return Reply(
            text=text,
            usage=usage,
            latency_s=end - self.start,
            truncated=truncated,
            first_token_s=None if first is None else first - self.start,
            generation_s=None if first is None else end - first,
            started_at=self.started_at,
            tool_calls=tool_calls,
        )


def arguments_object(arguments: str) -> dict[str, Any] | None:
    """A tool call's arguments as the JSON object they should be; None if they are not one
    (malformed, cut at the token limit, or another JSON value)."""
    try:
        parsed = json.loads(arguments)
    except (ValueError, RecursionError):  # RecursionError: nested a thousand deep
        return None
    return parsed if isinstance(parsed, dict) else None


def sdk_error(exc: Exception, label: str, where: str) -> SampleError:
    """`exc`, raised by the anthropic or openai SDK asking `where` for model `label`."""
    return SampleError("generate", f"{label}: {sdk_problem(exc, where)}")


def sdk_problem(exc: Exception, where: str, retries: int = MAX_RETRIES) -> str:
    """What `exc`, raised by an SDK asking `where`, says went wrong, in one line."""
    where = public_url(where)
    status: int | None = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or exc).strip().splitlines()[0][:300]
    if status == 401:
        return f"{where} refused the API key (HTTP 401)"
    if status is not None:
        retried = retries and (status in _RETRIED or status >= 500)
        after = f" after {retries} retries" if retried else ""
        return f"{where} answered HTTP {status}{after}: {message}"
    if "timeout" in type(exc).__name__.lower():
        return f"{where} did not answer in time" + (
            f", {retries} retries included" if retries else ""
        )
    cause = exc.__cause__ or exc.__context__
    return f"cannot reach {where}: {cause or message}"
