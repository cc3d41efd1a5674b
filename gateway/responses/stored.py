"""A stored response: what `previous_response_id` continues from, and how long it is kept.

A record holds one response's input items and output items, with the model, the team
that made it and when. Continuing from it sends stored input + stored output + the new
input, as OpenAI does; the new request's `instructions` replace the old ones (they are
not carried over). A record belongs to its team: another team's id is not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError

FORMAT = 1  # bump when the record's shape changes; an old record then reads as absent
TTL_S = 30 * 24 * 3600  # OpenAI keeps a stored response 30 days


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    team: str
    model: str  # the public model name the response was made with
    created_at: int  # UTC seconds
    input_items: list[dict[str, Any]]  # everything the response saw: the stored history before it and its input
    output_items: list[dict[str, Any]]
    response: dict[str, Any]  # the response object as the client got it (GET /v1/responses/{id})

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": FORMAT, "id": self.id, "team": self.team, "model": self.model,
                             "created_at": self.created_at, "input": self.input_items, "output": self.output_items,
                             "response": self.response})


def record(response: dict[str, Any], team: str, full_input: list[dict[str, Any]]) -> StoredResponse:
    """The record of a finished response object; `full_input` is what chat was sent, as items."""
    output = response.get("output")
    return StoredResponse(id=response["id"], team=team, model=response.get("model") or "",
                          created_at=response.get("created_at") or 0, input_items=full_input,
                          output_items=[item for item in output if isinstance(item, dict)] if isinstance(output, list)
                          else [], response=response)


def from_bytes(raw: bytes | None) -> StoredResponse | None:
    """A record read back from the store; None when absent, of an old format, or not a record at all."""
    if not raw:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT:
        return None
    fields = (doc.get("id"), doc.get("team"), doc.get("model"), doc.get("created_at"), doc.get("input"),
              doc.get("output"), doc.get("response"))
    types = (str, str, str, int, list, list, dict)
    if not all(isinstance(value, kind) for value, kind in zip(fields, types, strict=True)):
        return None
    if not all(isinstance(item, dict) for item in fields[4] + fields[5]):
        return None
    return StoredResponse(*fields)


def ttl_s(created_at: int, now: int, ttl: int = TTL_S) -> int:
    """Seconds a record made at `created_at` (UTC seconds) has left to live; 0 when it is due to go."""
    return max(created_at + ttl - now, 0)


def expand(previous: StoredResponse | None, response_id: str, team: str,
           new_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The full input for a request continuing `response_id`: stored input, stored output, new input.

    A record that is missing, expired or another team's is the same 404, so that ids
    tell nothing about other teams.
    """
    if previous is None or previous.team != team or previous.id != response_id:
        raise not_found(response_id)
    return [*previous.input_items, *previous.output_items, *new_items]


def not_found(response_id: str) -> GatewayError:
    return GatewayError(404, f"Previous response with id '{response_id[:100]}' not found.",
                        param="previous_response_id", code="previous_response_not_found")


def response_not_found(response_id: str) -> GatewayError:
    """GET or DELETE of a response that is not stored (or is another team's: the same answer)."""
    return GatewayError(404, f"No response found with id '{response_id[:100]}'.", param="response_id",
                        code="not_found")
