"""What the SDK-backed providers share: one client per model, made once, and failures in one
line with the same words for every provider."""

from __future__ import annotations

import os
import threading
from typing import Any, Generic, TypeVar

from ...config import ModelSpec, public_url
from ...errors import SampleError
from .protocol import MAX_RETRIES

__all__ = ["SDKProvider", "sdk_error"]

ClientT = TypeVar("ClientT", bound=Any)

# Statuses the SDKs retry: a failure with one of these has outlived the retries.
_RETRIED = {408, 409, 429}


class SDKProvider(Generic[ClientT]):
    """A provider over an official SDK client, shared by every thread (one connection pool)."""

    key_variables: tuple[str, ...] = ()  # any one of them set is a key

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
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


def sdk_error(exc: Exception, label: str, where: str) -> SampleError:
    """`exc`, raised by the anthropic or openai SDK asking `where` for model `label`."""
    where = public_url(where)
    status: int | None = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or exc).strip().splitlines()[0][:300]
    if status == 401:
        reason = f"{where} refused the API key (HTTP 401)"
    elif status is not None:
        retried = status in _RETRIED or status >= 500
        after = f" after {MAX_RETRIES} retries" if retried else ""
        reason = f"{where} answered HTTP {status}{after}: {message}"
    elif "timeout" in type(exc).__name__.lower():
        reason = f"{where} did not answer in time, {MAX_RETRIES} retries included"
    else:
        cause = exc.__cause__ or exc.__context__
        reason = f"cannot reach {where}: {cause or message}"
    return SampleError("generate", f"{label}: {reason}")
