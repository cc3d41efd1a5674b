"""A Responses request, checked once, and the Chat Completions body it translates to.

`read_request` checks the body and refuses what a chat provider cannot do (a 400 naming
the parameter); `chat_body` builds the chat request from the full input, after the caller
has put a stored conversation in front of it (stored.expand). What the response object
must echo back (instructions, tools, text format, ...) is kept in `echo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import bad_request
from gateway.responses.answer import ResponseHead
from gateway.responses.features import FUNCTION, refuse_untranslatable
from gateway.responses.items import input_items, messages

MAX_TOOLS = 128  # OpenAI's own limit on a request's tools
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
TOOL_CHOICES = frozenset({"auto", "none", "required"})
EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
VERBOSITIES = frozenset({"low", "medium", "high"})
# Every field a translated route takes; any other is a 400 naming it, never dropped unseen.
# (Fields only a native route serves are in this set too: features refuses them by name.)
KNOWN_FIELDS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "max_output_tokens",
    "temperature", "top_p", "metadata", "user", "safety_identifier", "prompt_cache_key", "stream",
    "stream_options", "reasoning", "store", "previous_response_id", "include", "service_tier", "gateway",
    "background", "conversation", "prompt", "truncation", "max_tool_calls", "top_logprobs", "context_management",
})
_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
_PASSED = ("user", "safety_identifier", "prompt_cache_key", "service_tier")  # same name and meaning in chat


@dataclass(slots=True)
class ResponsesRequest:
    model: str
    stream: bool
    store: bool  # OpenAI's default is to store a response for previous_response_id
    previous_response_id: str | None
    instructions: str | None
    input_items: list[dict[str, Any]]  # this request's own input, as items (what a stored record keeps)
    chat: dict[str, Any]  # the chat body's fields other than `messages`
    echo: dict[str, Any]  # the request's settings as a response object shows them


@dataclass(slots=True)
class ResponsesCall:
    """What a Responses request carries down the request path beside its chat translation."""

    request: ResponsesRequest
    items: list[dict[str, Any]]  # the whole input: a stored conversation's items, then this request's
    native: dict[str, Any]  # the body a native route is sent, `model` aside
    head: ResponseHead  # the answer's id, time, public model name and echoed settings


def read_request(raw: bytes) -> ResponsesRequest:
    """Parse and check a Responses body; raise a 400 GatewayError naming the bad or untranslatable field."""
    return checked_request(parsed(raw))


def parsed(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def checked_request(body: dict[str, Any]) -> ResponsesRequest:
    """A parsed Responses body checked, with its chat translation; a 400 naming what cannot be."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", param="model", code="missing_required_parameter")
    for name in body:
        if name not in KNOWN_FIELDS:
            raise bad_request(f"Unknown parameter: '{name[:60]}'.", param=name[:60], code="unknown_parameter")
    refuse_untranslatable(body)
    stream = _optional(body, "stream", bool) or False
    chat: dict[str, Any] = {"model": model, "stream": stream}
    if stream:
        chat["stream_options"] = {"include_usage": True}  # a translated stream must end with its usage
    elif body.get("stream_options") is not None:
        raise bad_request("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                          param="stream_options")
    _optional(body, "stream_options", dict)
    for i, entry in enumerate(_optional(body, "include", list) or ()):
        if not isinstance(entry, str):
            raise bad_request(f"include[{i}] must be a string", param=f"include[{i}]", code="invalid_type")
    tools = _tools(body, chat)
    echo = {
        "instructions": _optional(body, "instructions", str),
        "tools": tools,
        "tool_choice": _tool_choice(body, tools, chat),
        "parallel_tool_calls": _parallel_tool_calls(body, tools, chat),
        "text": _text(body, chat),
        "reasoning": _reasoning(body, chat),
        "max_output_tokens": _max_output_tokens(body, chat),
        "temperature": _number(body, "temperature", 0, 2, chat),
        "top_p": _number(body, "top_p", 0, 1, chat),
        "metadata": _metadata(body.get("metadata")),
        "store": _optional(body, "store", bool) is not False,
        "previous_response_id": _optional(body, "previous_response_id", str) or None,
        "truncation": "disabled", "background": False, "max_tool_calls": None, "top_logprobs": 0,
    }
    for name in _PASSED:
        echo[name] = chat[name] = _optional(body, name, str)
    if body.get("gateway") is not None:
        chat["gateway"] = body["gateway"]  # the gateway's own route narrowing, read by the call as for chat
    return ResponsesRequest(model=model, stream=stream, store=echo["store"],
                            previous_response_id=echo["previous_response_id"], instructions=echo["instructions"],
                            input_items=input_items(body.get("input")), chat=_drop_none(chat), echo=echo)


def chat_body(request: ResponsesRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The Chat Completions body for `items` (this request's input, after any stored history)."""
    history = messages(items)
    if request.instructions:
        history.insert(0, {"role": "system", "content": request.instructions})
    return {**request.chat, "messages": history}


def _tools(body: dict[str, Any], chat: dict[str, Any]) -> list[dict[str, Any]]:
    tools = _optional(body, "tools", list) or []
    if len(tools) > MAX_TOOLS:
        raise bad_request(f"'tools' holds {len(tools)} tools; at most {MAX_TOOLS} are allowed", param="tools",
                          code="array_above_max_length")
    echoed, functions, names = [], [], set()
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != FUNCTION:
            raise bad_request(f"{param} must be a function tool: {{\"type\": \"function\", \"name\": ...}}",
                              param=f"{param}.type", code="invalid_value")
        for key in tool:
            if key not in _TOOL_KEYS:
                raise bad_request(f"Unknown parameter: '{param}.{key[:40]}'.", param=f"{param}.{key[:40]}",
                                  code="unknown_parameter")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(f"{param}.name must be a non-empty string", param=f"{param}.name",
                              code="missing_required_parameter")
        if name in names:
            raise bad_request(f"{param}.name {name[:64]!r} is given twice", param=f"{param}.name", code="invalid_value")
        names.add(name)
        description = _optional(tool, "description", str, f"{param}.description")
        parameters = _optional(tool, "parameters", dict, f"{param}.parameters")
        strict = _optional(tool, "strict", bool, f"{param}.strict")
        function: dict[str, Any] = {"name": name}
        for key, value in (("description", description), ("parameters", parameters), ("strict", strict)):
            if value is not None:
                function[key] = value
        functions.append({"type": FUNCTION, "function": function})
        echoed.append({"type": FUNCTION, "name": name, "description": description, "parameters": parameters,
                       "strict": strict})
    if functions:
        chat["tools"] = functions
    return echoed


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]], chat: dict[str, Any]) -> Any:
    choice = body.get("tool_choice")
    if choice is None:
        return "auto"
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        if tools:
            chat["tool_choice"] = choice
        return choice
    if isinstance(choice, dict) and choice.get("type") == FUNCTION and isinstance(choice.get("name"), str):
        if not any(tool["name"] == choice["name"] for tool in tools):
            raise bad_request(f"tool_choice names {choice['name'][:64]!r}, which is not one of 'tools'",
                              param="tool_choice.name", code="invalid_value")
        chat["tool_choice"] = {"type": FUNCTION, "function": {"name": choice["name"]}}
        return {"type": FUNCTION, "name": choice["name"]}
    raise bad_request("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}",
                      param="tool_choice", code="invalid_value")


def _parallel_tool_calls(body: dict[str, Any], tools: list[dict[str, Any]], chat: dict[str, Any]) -> bool:
    value = _optional(body, "parallel_tool_calls", bool)
    if value is not None and tools:
        chat["parallel_tool_calls"] = value  # some providers refuse it beside no tools
    return value is not False


def _text(body: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    text = _optional(body, "text", dict) or {}
    for key in text:
        if key not in ("format", "verbosity"):
            raise bad_request(f"Unknown parameter: 'text.{key[:40]}'.", param=f"text.{key[:40]}",
                              code="unknown_parameter")
    echoed: dict[str, Any] = {"format": _text_format(text.get("format"), chat)}
    verbosity = text.get("verbosity")
    if verbosity is not None:
        if verbosity not in VERBOSITIES:
            raise bad_request(f"text.verbosity must be one of {', '.join(sorted(VERBOSITIES))}",
                              param="text.verbosity", code="invalid_value")
        echoed["verbosity"] = chat["verbosity"] = verbosity
    return echoed


def _text_format(given: Any, chat: dict[str, Any]) -> dict[str, Any]:
    kind = given.get("type") if isinstance(given, dict) else None
    if given is None or kind == "text":
        return {"type": "text"}
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
        return {"type": "json_object"}
    if kind != "json_schema":
        raise bad_request("text.format.type must be 'text', 'json_object' or 'json_schema'",
                          param="text.format.type", code="invalid_value")
    name = given.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("text.format.name must be a non-empty string", param="text.format.name",
                          code="missing_required_parameter")
    schema = given.get("schema")
    if not isinstance(schema, dict):
        raise bad_request("text.format.schema must be a JSON Schema object", param="text.format.schema",
                          code="missing_required_parameter" if schema is None else "invalid_type")
    spec: dict[str, Any] = {"name": name, "schema": schema}
    description = _optional(given, "description", str, "text.format.description")
    strict = _optional(given, "strict", bool, "text.format.strict")
    if description is not None:
        spec["description"] = description
    if strict is not None:
        spec["strict"] = strict
    chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    return {"type": "json_schema", **spec}


def _reasoning(body: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    """Only `effort` translates (as chat's `reasoning_effort`, sent to the providers that take it);
    a summary cannot, and features refused it."""
    reasoning = _optional(body, "reasoning", dict) or {}
    effort = reasoning.get("effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise bad_request(f"reasoning.effort must be one of {', '.join(sorted(EFFORTS))}",
                              param="reasoning.effort", code="invalid_value")
        chat["reasoning_effort"] = effort
    return {"effort": effort, "summary": None}


def _max_output_tokens(body: dict[str, Any], chat: dict[str, Any]) -> int | None:
    value = _optional(body, "max_output_tokens", int)
    if value is not None:
        if value < 1:
            raise bad_request(f"max_output_tokens must be 1 or more, got {value}", param="max_output_tokens",
                              code="invalid_value")
        chat["max_tokens"] = value
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float, chat: dict[str, Any]) -> float | None:
    value = _optional(body, name, (int, float))
    if value is not None:
        if not low <= value <= high:
            raise bad_request(f"{name} must be between {low} and {high}, got {value}", param=name,
                              code="invalid_value")
        chat[name] = value
    return value


def _metadata(metadata: Any) -> dict[str, str]:
    """Kept for the response object (and the stored record); a chat provider is not sent it."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        raise bad_request(f"metadata must be an object of at most {MAX_METADATA_KEYS} string pairs",
                          param="metadata", code="invalid_type")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_CHARS or not isinstance(value, str) or len(value) > MAX_METADATA_VALUE_CHARS:
            raise bad_request(f"metadata keys are at most {MAX_METADATA_KEY_CHARS} characters and values strings of "
                              f"at most {MAX_METADATA_VALUE_CHARS}", param=f"metadata.{key[:64]}",
                              code="invalid_value")
    return metadata


def _optional(body: dict[str, Any], name: str, types: type | tuple[type, ...], param: str | None = None) -> Any:
    """`body[name]`, None when absent or null; a 400 naming it when of another JSON type."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)) \
            or not isinstance(value, types):
        raise bad_request(f"Invalid type for '{param or name}'.", param=param or name, code="invalid_type")
    return value


def _drop_none(chat: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in chat.items() if value is not None}
