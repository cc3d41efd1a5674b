"""A whole chat completion as a Responses `response` object, and the parts a stream shares.

Output items are a `message` (the answer's text, when it has any or makes no tool call)
and then one `function_call` item per tool call, in the order chat listed them. Item
ids derive from the response id and the item's place, so a streamed answer and a whole
one with the same content are the same object. `output_text` is not written: the SDKs
compute it from the message items.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.ids import new_id

# Chat finish_reason -> (response status, incomplete_details.reason).
_ENDINGS = {"length": ("incomplete", "max_output_tokens"), "content_filter": ("incomplete", "content_filter")}
_COMPLETED = ("completed", None)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What every object of one response shares: its id, birth, public model name and echoed settings."""

    id: str
    created_at: int  # UTC seconds, as the API shows it
    model: str
    echo: dict[str, Any]


def new_head(model: str, echo: dict[str, Any]) -> ResponseHead:
    return ResponseHead(id=f"resp_{new_id()}", created_at=int(time.time()), model=model, echo=echo)


def item_id(head: ResponseHead, prefix: str, index: int) -> str:
    """`msg_...` or `fc_...`: unique, since the response id is, and the same whenever rebuilt."""
    return f"{prefix}_{head.id[5:]}{index:04x}"


def ending(finish_reason: Any) -> tuple[str, str | None]:
    """(status, incomplete reason) for a chat finish_reason; anything unknown ends the answer normally."""
    return _ENDINGS.get(finish_reason, _COMPLETED) if isinstance(finish_reason, str) else _COMPLETED


def response_object(head: ResponseHead, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None,
                    incomplete_reason: str | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": head.id, "object": "response", "created_at": head.created_at, "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error, "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": head.model, "output": output, "usage": usage, **head.echo,
    }


def message_item(item: str, text: str | None, status: str) -> dict[str, Any]:
    """A message item; `text=None` is one just added, with no content part yet."""
    content = [] if text is None else [output_text(text)]
    return {"id": item, "type": "message", "role": "assistant", "status": status, "content": content}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def response_usage(usage: Any) -> dict[str, Any] | None:
    """Chat usage in the Responses shape; a figure that is not a count reads as 0."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    prompt_details, completion_details = usage.get("prompt_tokens_details"), usage.get("completion_tokens_details")
    if not isinstance(prompt_details, dict):
        prompt_details = {}
    reasoning = _count(completion_details.get("reasoning_tokens")) if isinstance(completion_details, dict) else 0
    # Chat providers seldom report cache writes; the current SDK requires the field all the same.
    cached = {"cached_tokens": _count(prompt_details.get("cached_tokens")),
              "cache_write_tokens": _count(prompt_details.get("cache_write_tokens"))}
    return {"input_tokens": prompt, "input_tokens_details": cached,
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": _count(usage.get("total_tokens")) or prompt + completion}


def from_completion(completion: Any, head: ResponseHead) -> dict[str, Any]:
    """The response object for a whole chat completion; a 502 when the upstream's body has no answer."""
    choice = _first_choice(completion)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _garbage("its choice has no message")
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls")
    calls = [call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []
    status, reason = ending(choice.get("finish_reason"))
    output = []
    if text or not calls:
        output.append(message_item(item_id(head, "msg", 0), text, "completed"))
    for call in calls:
        index = len(output)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        output.append(call_item(item_id(head, "fc", index), call_id(call.get("id"), head, index),
                                _text(function.get("name")), arguments(function.get("arguments")), "completed"))
    if status == "incomplete":
        output[-1]["status"] = "incomplete"
    return response_object(head, status, output, response_usage(completion.get("usage")), reason)


def call_id(given: Any, head: ResponseHead, index: int) -> str:
    """The provider's tool call id, or one made up where it gave none (the client must echo one back)."""
    return given if isinstance(given, str) and given else item_id(head, "call", index)


def arguments(value: Any) -> str:
    """A tool call's arguments as JSON text; some providers send them as an object."""
    if isinstance(value, str):
        return value
    return "" if value is None else orjson.dumps(value).decode()


def _first_choice(completion: Any) -> dict[str, Any]:
    if not isinstance(completion, dict):
        raise _garbage("it is not a JSON object")
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _garbage("it has no choices")
    return choices[0]


def _garbage(why: str) -> GatewayError:
    return GatewayError(502, f"The upstream's chat completion cannot be read as a response: {why}.",
                        type="upstream_error", code="bad_upstream_response", retryable=True)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
