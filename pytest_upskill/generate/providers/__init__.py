"""Model providers behind one small protocol (`protocol`); `provider_for` picks one per model
spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .protocol import (
    MAX_RETRIES,
    Message,
    Provider,
    Reply,
    Request,
    Tool,
    ToolCall,
    ToolResult,
    Usage,
)

if TYPE_CHECKING:
    from ...config import ModelSpec

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
    "provider_for",
]


def provider_for(spec: ModelSpec, timeout_s: float = 600.0) -> Provider:
    """The provider of `spec`; `timeout_s` bounds each request (each retry its own)."""
    if spec.provider == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider(spec, timeout_s)
    if spec.provider == "openai":
        from .openai import OpenAIProvider

        return OpenAIProvider(spec, timeout_s)
    from .oracle import OracleProvider

    return OracleProvider()
