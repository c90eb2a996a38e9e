"""What a reply cost: token counts times a price table the user can extend in ini."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .providers import Usage

if TYPE_CHECKING:
    from ..config import ModelSpec

__all__ = ["PRICES", "cost_usd"]

# USD per million input and output tokens, from the providers' published price lists.
# A model that is not here (or in `upskill_prices`) has no cost: null, never a guess.
PRICES: dict[str, tuple[float, float]] = {
    "oracle": (0.0, 0.0),
    "anthropic:claude-opus-4-1": (15.0, 75.0),
    "anthropic:claude-sonnet-4-5": (3.0, 15.0),
    "anthropic:claude-haiku-4-5": (1.0, 5.0),
    "openai:gpt-5": (1.25, 10.0),
    "openai:gpt-5-mini": (0.25, 2.0),
    "openai:gpt-5-nano": (0.05, 0.4),
    "openai:gpt-4.1": (2.0, 8.0),
    "openai:gpt-4o": (2.5, 10.0),
    "openai:gpt-4o-mini": (0.15, 0.6),
}


def cost_usd(spec: ModelSpec, usage: Usage, extra: dict[str, tuple[float, float]]) -> float | None:
    """The cost of `usage` for model `spec`, priced by its label or else its provider:model in
    the user's table, then in the published list; a model behind its own base URL is priced only
    by the user's table (a local server is not OpenAI's price list)."""
    price = extra.get(spec.label) or extra.get(spec.identity)
    if price is None and spec.base_url is None:
        price = PRICES.get(spec.priced_as)
    if price is None:
        return None
    per_input, per_output = price
    return round((usage.input_tokens * per_input + usage.output_tokens * per_output) / 1e6, 6)
