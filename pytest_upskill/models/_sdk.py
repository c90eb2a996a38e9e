"""What went wrong with an SDK call, in one line: the same words for every provider."""

from __future__ import annotations

from ..errors import SampleError
from . import MAX_RETRIES

__all__ = ["sdk_error"]

# Statuses the SDKs retry: a failure with one of these has outlived the retries.
_RETRIED = {408, 409, 429}


def sdk_error(exc: Exception, label: str, where: str) -> SampleError:
    """`exc`, raised by the anthropic or openai SDK asking `where` for model `label`."""
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
