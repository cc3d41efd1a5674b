"""Input items, checked, and turned into Chat Completions messages.

A Responses `input` is a string or a list of items: messages, `function_call` items (a
model's tool calls, sent back as history) and `function_call_output` items (their
results). Chat holds the same history as messages: a tool call is an assistant message
with `tool_calls`, its result a `tool` message. Items that only OpenAI can read (built-in
tool calls, reasoning, references) are refused before this module sees them (features).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import bad_request

INPUT_ROLES = frozenset({"user", "assistant", "system", "developer"})
# Keys an item or a part may carry that change nothing for the model: OpenAI's ids and
# statuses, and what its SDKs copy back from an output item.
_INERT = frozenset({"id", "status", "type", "annotations", "logprobs", "phase"})
_MESSAGE_KEYS = frozenset({"role", "content"}) | _INERT
_CALL_KEYS = frozenset({"call_id", "name", "arguments"}) | _INERT
_OUTPUT_KEYS = frozenset({"call_id", "output"}) | _INERT
_IMAGE_DETAILS = frozenset({"auto", "low", "high", "original"})


def input_items(value: Any) -> list[dict[str, Any]]:
    """The request's `input` as a checked list of items; a string is one user message."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list) or not value:
        raise bad_request("'input' must be a string or a non-empty array of input items", param="input",
                          code="missing_required_parameter" if value is None else "invalid_type")
    for i, item in enumerate(value):
        _check_item(item, f"input[{i}]")
    return value


def messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages for checked items, in order.

    A `function_call` item joins the assistant message just before it (that message's
    text, or the calls before it), since chat keeps one turn's text and calls together.
    """
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_call_id" not in last:
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item["output"])})
        else:
            out.append(_message(item))
    return out


def _message(item: dict[str, Any]) -> dict[str, Any]:
    role, content = item["role"], item["content"]
    if role == "developer":
        role = "system"  # not every chat provider knows "developer"; it means system there
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role == "user":
        return {"role": role, "content": [_user_part(part) for part in content]}
    # System text and assistant history as one string: the shape every chat provider takes.
    return {"role": role, "content": "".join(part.get("text") or part.get("refusal") or "" for part in content)}


def _user_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "input_image":
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    return {"type": "text", "text": part["text"]}


def _output_text(output: str | list[dict[str, Any]]) -> str:
    return output if isinstance(output, str) else "".join(part["text"] for part in output)


def _check_item(item: Any, param: str) -> None:
    if not isinstance(item, dict):
        raise bad_request(f"{param} must be an input item object", param=param, code="invalid_type")
    kind = item.get("type", "message")
    if kind == "message":
        _check_keys(item, _MESSAGE_KEYS, param)
        _check_message(item, param)
    elif kind == "function_call":
        _check_keys(item, _CALL_KEYS, param)
        for field in ("call_id", "name", "arguments"):
            _check_string(item.get(field), f"{param}.{field}", empty_ok=field == "arguments")
    elif kind == "function_call_output":
        _check_keys(item, _OUTPUT_KEYS, param)
        _check_string(item.get("call_id"), f"{param}.call_id")
        _check_tool_output(item.get("output"), f"{param}.output")
    else:
        raise bad_request(f"{param}.type is {str(kind)[:40]!r}; a translated route takes message, function_call and "
                          "function_call_output items", param=f"{param}.type", code="invalid_value")


def _check_keys(item: dict[str, Any], known: frozenset[str], param: str) -> None:
    for key, value in item.items():
        if key not in known and value is not None:
            raise bad_request(f"{param}.{key[:40]} is not a field this item can carry on a translated route",
                              param=f"{param}.{key[:40]}", code="unknown_parameter")


def _check_message(item: dict[str, Any], param: str) -> None:
    role = item.get("role")
    if role not in INPUT_ROLES:
        raise bad_request(f"{param}.role must be one of {', '.join(sorted(INPUT_ROLES))}", param=f"{param}.role",
                          code="invalid_value")
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise bad_request(f"{param}.content must be a string or an array of content parts", param=f"{param}.content",
                          code="invalid_type")
    allowed = _ASSISTANT_PARTS if role == "assistant" else _USER_PARTS if role == "user" else _TEXT_PARTS
    for j, part in enumerate(content):
        _check_part(part, allowed, f"{param}.content[{j}]")


def _check_part(part: Any, allowed: frozenset[str], param: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in allowed:
        raise bad_request(f"{param} must be a content part of type {' or '.join(sorted(allowed))}", param=param,
                          code="invalid_value")
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise bad_request(f"{param}.image_url must be a URL or a data: URL", param=f"{param}.image_url",
                              code="missing_required_parameter" if url is None else "invalid_type")
        if part.get("detail") is not None and part["detail"] not in _IMAGE_DETAILS:
            raise bad_request(f"{param}.detail must be one of {', '.join(sorted(_IMAGE_DETAILS))}",
                              param=f"{param}.detail", code="invalid_value")
    else:
        field = "refusal" if kind == "refusal" else "text"
        _check_string(part.get(field), f"{param}.{field}", empty_ok=True)


def _check_tool_output(output: Any, param: str) -> None:
    if isinstance(output, str):
        return
    if not isinstance(output, list):
        raise bad_request(f"{param} must be a string or an array of input_text parts", param=param,
                          code="invalid_type")
    for j, part in enumerate(output):
        if not isinstance(part, dict) or part.get("type") != "input_text":
            raise bad_request(f"{param}[{j}]: a chat tool message carries text only, so a translated route takes "
                              "input_text parts here", param=f"{param}[{j}]", code="invalid_value")
        _check_string(part.get("text"), f"{param}[{j}].text", empty_ok=True)


def _check_string(value: Any, param: str, empty_ok: bool = False) -> None:
    if not isinstance(value, str) or not (value or empty_ok):
        raise bad_request(f"{param} must be a {'' if empty_ok else 'non-empty '}string", param=param,
                          code="missing_required_parameter" if value is None else "invalid_type")


_USER_PARTS = frozenset({"input_text", "input_image"})
_TEXT_PARTS = frozenset({"input_text"})
_ASSISTANT_PARTS = frozenset({"output_text", "refusal", "input_text"})
