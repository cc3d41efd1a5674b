"""What the tests hold the translation to: the openai SDK's own types, which it never checks itself."""

from __future__ import annotations

from typing import Any

import orjson
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

EVENT = TypeAdapter(ResponseStreamEvent)


def valid_response(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj`, after the SDK's Response model accepted it as it is on the wire."""
    Response.model_validate(orjson.loads(orjson.dumps(obj)))
    return obj


def events_of(raw: bytes) -> list[dict[str, Any]]:
    """The SSE events in `raw`, each checked: `event:` names its type, the SDK's event model accepts it."""
    events = []
    assert raw.endswith(b"\n\n"), raw[-80:]
    for block in raw[:-2].split(b"\n\n"):
        name, data = block.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: "), block[:200]
        EVENT.validate_json(data[6:])
        event = orjson.loads(data[6:])
        assert event["type"] == name[7:].decode()
        events.append(event)
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]
