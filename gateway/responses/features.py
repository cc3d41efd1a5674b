"""Responses features that Chat Completions cannot express: only a native route serves them.

One table for both uses: `needs` lists a request's such features for the router (never
raising, whatever the body holds), and `refuse_untranslatable` turns the first of them
into the 400 a translated route answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.errors import GatewayError, bad_request

FUNCTION = "function"
# Tools OpenAI runs on its side; a chat provider has nothing that runs them.
BUILT_IN_TOOLS = frozenset({
    "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11", "file_search",
    "computer", "computer_use", "computer_use_preview", "code_interpreter", "image_generation", "mcp",
    "local_shell", "shell", "apply_patch", "custom", "namespace", "tool_search", "programmatic_tool_calling",
})
# `include` entries that add nothing to a translated answer: it has no reasoning items and
# echoes no input images, so asking for their extra fields is asking for nothing.
HARMLESS_INCLUDES = frozenset({"reasoning.encrypted_content", "message.input_image.image_url"})
# Top-level fields a translated route cannot honour, when set to anything but these values.
_NATIVE_FIELDS: dict[str, tuple[object, ...]] = {
    "background": (False,),
    "conversation": (),
    "prompt": (),
    "truncation": ("disabled",),
    "max_tool_calls": (),
    "top_logprobs": (0,),
    "context_management": (),
}
_WHY = {
    "background": "background responses need a native route",
    "conversation": "conversations are kept by OpenAI; send the history as input, or use previous_response_id",
    "prompt": "prompt templates live at OpenAI; send the instructions and input instead",
    "truncation": "truncation 'auto' needs the model's own tokenizer; send an input that fits",
    "max_tool_calls": "max_tool_calls limits built-in tool calls, which a translated route has none of",
    "top_logprobs": "log-probabilities are not translated",
    "context_management": "context management runs at OpenAI",
}


def needs(body: Any) -> frozenset[str]:
    """The features (as "responses.<name>") this request needs a native Responses route for."""
    if not isinstance(body, dict):
        return frozenset()
    return frozenset(feature for feature, _param, _why in _untranslatable(body))


def refuse_untranslatable(body: dict[str, Any]) -> None:
    """A 400 naming the first part of `body` that Chat Completions cannot carry."""
    for feature, param, why in _untranslatable(body):
        raise untranslatable(param, why, feature)


def untranslatable(param: str, why: str, feature: str) -> GatewayError:
    return bad_request(f"'{param}' cannot be served by this model's routes: {why}. It needs a route that speaks "
                       f"the Responses API natively (feature {feature}).", param=param, code="unsupported_parameter")


def _untranslatable(body: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(feature, param, why) for every untranslatable part, in the order a reader meets them."""
    for name, allowed in _NATIVE_FIELDS.items():
        value = body.get(name)
        if value is not None and value not in allowed:
            yield f"responses.{name}", name, _WHY[name]
    yield from _tools(body.get("tools"))
    yield from _tool_choice(body.get("tool_choice"))
    yield from _includes(body.get("include"))
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict):
        for name in ("summary", "generate_summary"):
            if reasoning.get(name) is not None:
                yield "responses.reasoning_summary", f"reasoning.{name}", "chat providers return no reasoning summary"
    yield from _input(body.get("input"))


def _tools(tools: Any) -> Iterator[tuple[str, str, str]]:
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind in BUILT_IN_TOOLS:
            yield f"responses.tool.{kind}", f"tools[{i}].type", f"the {kind} tool runs at OpenAI"


def _tool_choice(choice: Any) -> Iterator[tuple[str, str, str]]:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "allowed_tools":
        yield "responses.allowed_tools", "tool_choice.type", "allowed_tools is not translated; send only those tools"
    elif isinstance(kind, str) and kind != FUNCTION:
        yield f"responses.tool.{kind}", "tool_choice.type", f"the {kind} tool runs at OpenAI"


def _includes(include: Any) -> Iterator[tuple[str, str, str]]:
    if not isinstance(include, list):
        return
    for i, entry in enumerate(include):
        if isinstance(entry, str) and entry not in HARMLESS_INCLUDES:
            feature = "logprobs" if entry == "message.output_text.logprobs" else f"include.{entry}"
            yield f"responses.{feature}", f"include[{i}]", f"{entry!r} is not translated"


def _input(items: Any) -> Iterator[tuple[str, str, str]]:
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "item_reference":
            yield "responses.item_reference", f"input[{i}]", "item references resolve at OpenAI"
        elif kind == "reasoning":
            yield "responses.reasoning_items", f"input[{i}]", "reasoning items only mean something to OpenAI models"
        elif kind not in (None, "message", "function_call", "function_call_output") and isinstance(kind, str):
            yield f"responses.item.{kind}", f"input[{i}].type", f"{kind} items belong to built-in tools"
        yield from _parts(item, f"input[{i}]")


def _parts(item: dict[str, Any], param: str) -> Iterator[tuple[str, str, str]]:
    field = "output" if item.get("type") == "function_call_output" else "content"
    parts = item.get(field)
    if not isinstance(parts, list):
        return
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "input_file":
            yield "responses.input_file", f"{param}.{field}[{j}]", "file inputs are not translated"
        elif kind == "input_image" and part.get("file_id") is not None:
            yield ("responses.file_id", f"{param}.{field}[{j}].file_id",
                   "uploaded files live at OpenAI; send the image as image_url (a URL or a data: URL)")
