"""What a provider's `/models` publishes about each model: its context window, its output limit,
its price. Read by the model poller; the router bounds requests by them, /admin/routes shows them.

Each provider names these its own way: vLLM `max_model_len`; Novita `context_size`,
`max_output_tokens` and prices in its own unit; DeepInfra `metadata.context_length`,
`metadata.max_tokens` and `metadata.pricing`. Anything else is left unknown, never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from gateway.money import MAX_NANO, usd_to_nano


@dataclass(frozen=True, slots=True)
class ModelCard:
    """One model as its provider describes it; None where it says nothing usable."""

    context_window: int | None = None
    max_output_tokens: int | None = None
    input_per_mtok_nano: int | None = None
    output_per_mtok_nano: int | None = None

    @property
    def priced(self) -> bool:
        return self.input_per_mtok_nano is not None and self.output_per_mtok_nano is not None


def parse_cards(body: bytes, price_unit_usd: float = 1.0) -> dict[str, ModelCard] | None:
    """Model id -> card, from an OpenAI `/models` answer (`{"data": [...]}`, or a bare list);
    None when the body is not one."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    entries = doc.get("data") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        return None
    return {str(entry["id"]): _card(entry, price_unit_usd)
            for entry in entries if isinstance(entry, dict) and "id" in entry}


def _card(entry: dict[str, Any], unit: float) -> ModelCard:
    meta = entry.get("metadata") if isinstance(entry.get("metadata"), dict) else {}
    pricing = meta.get("pricing") if isinstance(meta.get("pricing"), dict) else {}
    return ModelCard(
        context_window=_tokens(entry.get("max_model_len"), entry.get("context_size"), meta.get("context_length")),
        max_output_tokens=_tokens(entry.get("max_output_tokens"), meta.get("max_tokens")),
        input_per_mtok_nano=_price(entry.get("input_token_price_per_m", pricing.get("input_tokens")), unit),
        output_per_mtok_nano=_price(entry.get("output_token_price_per_m", pricing.get("output_tokens")), unit),
    )


def _tokens(*values: Any) -> int | None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 40:
            return value
    return None


def _price(value: Any, unit: float) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    nano = usd_to_nano(str(Decimal(str(value)) * Decimal(str(unit))))  # exact: 2690 units of 0.0001
    return nano if nano <= MAX_NANO else None
