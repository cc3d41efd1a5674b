"""What a fake provider saw and what it would have charged, as plain records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as it reached the fake, before any fault or check ran.

    `time` is `time.monotonic()` at arrival; `json` is the parsed body, or None
    when there was no body or it was not valid JSON.
    """

    path: str
    headers: dict[str, str]  # lower-case names
    json: Any
    time: float
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Bill:
    """What the provider charges for one request it started generating.

    A stream the client abandoned is billed for the tokens written before the
    disconnect was noticed (`disconnected=True`); `ended_at` is `time.monotonic()`
    when the fake finished or noticed the disconnect.
    """

    prompt_tokens: int
    completion_tokens: int
    cost_usd_nano: int
    disconnected: bool
    model: str
    stream: bool
    endpoint: str = "chat"  # "chat", "completions" or "embeddings"
    ended_at: float = 0.0
