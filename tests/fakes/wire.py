"""What the fakes' own specs send and how they read a stream back."""

from __future__ import annotations

from typing import Any

import orjson

from .provider import FakeProvider


def auth(fake: FakeProvider) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.api_key}"} if fake.api_key else {}


def chat_body(model: str, text: str = "one two three", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def sse_events(raw: bytes) -> list[Any]:
    """Every `data:` payload in order; the final [DONE] stays a string."""
    events = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events
