"""What a request used: tokens, and the provider's own cost when it reports one.

An upstream's `usage` is untrusted: its counts must be whole numbers in range, its cost a
finite, non-negative number of dollars. Anything else is `InvalidUsage`, and the request
is billed from the gateway's own counts (`estimate`) instead: never at zero, never a 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gateway.money import MAX_NANO, usd_to_nano
from providers import Profile

BYTES_PER_TOKEN = 4  # what the gateway counts when no usage came: about four bytes a token


class InvalidUsage(ValueError):
    """An upstream's usage that cannot be billed; the message says which field and why."""


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    provider_cost_nano: int | None = None


def usage_from_doc(doc: Any, profile: Profile) -> Usage | None:
    """Usage from a parsed response or chunk, with the provider's own cost when it sends one.

    None when the document carries none; InvalidUsage when what it carries cannot be billed.
    """
    usage = doc.get("usage") if isinstance(doc, dict) else None
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise InvalidUsage(f"usage is a {type(usage).__name__}, not an object")
    cost = usage.get(profile.cost_field) if profile.cost_field else None
    # The Responses API names them input and output tokens; a reranker reads and generates nothing.
    prompt, completion = "prompt_tokens", "completion_tokens"
    if prompt not in usage:
        if "input_tokens" in usage:
            prompt, completion = "input_tokens", "output_tokens"
        elif "total_tokens" in usage:
            prompt = "total_tokens"
    return Usage(
        prompt_tokens=_count(usage, prompt, required=True),
        completion_tokens=_count(usage, completion, required=False),
        provider_cost_nano=None if cost is None else _cost(cost, profile.cost_field or ""),
    )


def estimate(prompt_bound_bytes: int, output_bytes: int) -> Usage:
    """Usage counted by the gateway when the upstream gave none that can be billed."""
    return Usage(prompt_tokens=-(-prompt_bound_bytes // BYTES_PER_TOKEN),
                 completion_tokens=-(-output_bytes // BYTES_PER_TOKEN))


def output_bytes(doc: Any) -> int:
    """The size of what a non-streamed answer generated: its texts, tool calls and refusals."""
    total = 0
    for choice in doc.get("choices") or () if isinstance(doc, dict) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else choice
        for field in ("content", "text", "refusal", "reasoning_content"):
            if isinstance(message.get(field), str):
                total += len(message[field].encode())
        if message.get("tool_calls"):
            total += len(repr(message["tool_calls"]).encode())
    return total


def _count(usage: dict[str, Any], name: str, required: bool) -> int:
    value = usage.get(name)
    if value is None and not required:
        return 0
    if type(value) is not int or not 0 <= value <= MAX_NANO:
        raise InvalidUsage(f"usage.{name} is {value!r}, not a whole number of tokens")
    return value


def _cost(value: Any, name: str) -> int:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0 or value > MAX_NANO / 1e9:
        raise InvalidUsage(f"usage.{name} is {value!r}, not a number of dollars")
    return min(usd_to_nano(value), MAX_NANO)
