"""What a request used: tokens, and the provider's own cost when it reports one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.money import usd_to_nano
from providers import Profile


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    provider_cost_nano: int | None = None


def usage_from_doc(doc: Any, profile: Profile) -> Usage | None:
    """Usage from a parsed response or chunk, with the provider's own cost when it sends one."""
    usage = doc.get("usage") if isinstance(doc, dict) else None
    if not isinstance(usage, dict):
        return None
    cost = usage.get(profile.cost_field) if profile.cost_field else None
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        provider_cost_nano=usd_to_nano(cost) if isinstance(cost, (int, float)) else None,
    )
