"""Which optional features a request asks for, counting only those its provider honours.

A feature the provider does not document is read as not asked, the way a real server
ignores a field it does not know: the answer is then plain text, floats, no logprobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import FakeError
from .profiles import BASE64_EMBEDDINGS, DIMENSIONS, JSON_OBJECT, JSON_SCHEMA, LOGPROBS, TOOLS, Profile
from .schema_instance import instance_of

JSON_OBJECT_ANSWER = '{"answer":"x"}'  # what every json_object request gets
MAX_TOP_LOGPROBS = 20  # OpenAI's and vLLM's default limit on alternatives per token
MAX_DIMENSIONS = 4096  # past OpenAI's largest embedding (3072); keeps a hostile body from a huge vector


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class Asked:
    tool_call: ToolCall | None = None  # chat: the call the answer makes instead of text
    json_text: str | None = None  # chat: the content response_format asks for
    top_logprobs: int | None = None  # None: no logprobs; else alternatives listed per token
    base64: bool = False  # embeddings
    dimensions: int | None = None  # embeddings: the vector's length when not the default


NOTHING_ASKED = Asked()

Bad = Callable[[str, str], FakeError]


def read_asked(endpoint: str, body: dict[str, Any], profile: Profile, bad: Bad) -> Asked:
    """The honoured features `body` asks for at `endpoint`; raises FakeError for invalid ones."""
    if endpoint == "embeddings":
        base64 = profile.honours(BASE64_EMBEDDINGS) and body.get("encoding_format") == "base64"
        dimensions = _dimensions(body, bad) if profile.honours(DIMENSIONS) else None
        return Asked(base64=base64, dimensions=dimensions)
    top = _top_logprobs(endpoint, body, bad) if profile.honours(LOGPROBS) else None
    if endpoint != "chat":
        return Asked(top_logprobs=top)
    tool_call = _tool_call(body, bad) if profile.honours(TOOLS) else None
    return Asked(tool_call=tool_call, json_text=_json_text(body, profile), top_logprobs=top)


def _tool_call(body: dict[str, Any], bad: Bad) -> ToolCall | None:
    """The call to the function `tool_choice` forces, else to the first tool; None for "none", and
    (as a model does, unless forced) once the last message is a tool's result: an agent's loop ends."""
    tools = body.get("tools")
    functions = [t["function"] for t in tools if _is_function_tool(t)] if isinstance(tools, list) else []
    choice = body.get("tool_choice")
    messages = body.get("messages")
    answered = isinstance(messages, list) and bool(messages) and isinstance(messages[-1], dict) \
        and messages[-1].get("role") == "tool"
    if not functions or choice == "none" or (answered and choice in (None, "auto")):
        return None
    chosen = functions[0]
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        named = [f for f in functions if f["name"] == name]
        if not named:
            raise bad("tool_choice", f"function {name!r} is not among the tools")
        chosen = named[0]
    parameters = chosen.get("parameters")
    arguments = instance_of(parameters if isinstance(parameters, dict) else {"type": "object"})
    return ToolCall(chosen["name"], orjson.dumps(arguments).decode())


def _is_function_tool(tool: Any) -> bool:
    function = tool.get("function") if isinstance(tool, dict) else None
    return isinstance(function, dict) and isinstance(function.get("name"), str)


def _json_text(body: dict[str, Any], profile: Profile) -> str | None:
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object" and profile.honours(JSON_OBJECT):
        return JSON_OBJECT_ANSWER
    if kind == "json_schema" and profile.honours(JSON_SCHEMA):
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return orjson.dumps(instance_of(schema if isinstance(schema, dict) else {"type": "object"})).decode()
    return None


def _top_logprobs(endpoint: str, body: dict[str, Any], bad: Bad) -> int | None:
    """Chat asks with `logprobs: true` (`top_logprobs` alternatives); completions with `logprobs: k`."""
    if endpoint == "chat":
        if body.get("logprobs") is not True:
            return None
        param, top = "top_logprobs", body.get("top_logprobs")
        top = top if _is_count(top) else 0
    else:
        param, top = "logprobs", body.get("logprobs")
        if not _is_count(top):
            return None
    if top > MAX_TOP_LOGPROBS:
        raise bad(param, f"must be at most {MAX_TOP_LOGPROBS}")
    return top


def _dimensions(body: dict[str, Any], bad: Bad) -> int | None:
    dimensions = body.get("dimensions")
    if dimensions is None:
        return None
    if not _is_count(dimensions) or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise bad("dimensions", f"must be an integer from 1 to {MAX_DIMENSIONS}")
    return dimensions


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
