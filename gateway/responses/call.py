"""A Responses request as a call: its chat translation, which the router, admission and chat-only
routes work from, and the body a route that serves the API itself is sent.

A request that uses what only OpenAI's side runs (built-in tools, background responses, ...)
has no translation: it is checked lightly here, needs a native route (`responses.native`),
and the upstream checks the rest. Either way a stored conversation (`previous_response_id`)
is put in front of the input here, so every route, native ones included, gets the whole of it:
a fallback may change the provider, and a vLLM server's own store is its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from gateway.call import MAX_OUTPUT_TOKENS, Call, checked_call
from gateway.errors import GatewayError, bad_request
from gateway.responses.answer import new_head
from gateway.responses.features import needs, refuse_untranslatable
from gateway.responses.request import ResponsesCall, ResponsesRequest, chat_body, checked_request, parsed
from gateway.responses.stored import StoredResponse, expand, from_bytes
from gateway.store import Store, StoreUnavailable
from providers.features import NATIVE_RESPONSES as NATIVE

_GATEWAY_ONLY = ("previous_response_id", "gateway")  # read here, never sent upstream
CONVERSATION_BODIES = 4  # a continued conversation is at most this many times server.max_body_bytes


def read_responses(raw: bytes) -> tuple[dict[str, Any], ResponsesRequest]:
    """The parsed body and the request it makes; a 400 GatewayError naming a bad field."""
    body = parsed(raw)
    if needs(body):
        return body, _native_only(body)
    return body, checked_request(body)


async def read_responses_call(raw: bytes, store: Store, team: str, max_output_tokens: int,
                              max_body_bytes: int) -> Call:
    """The call for a Responses body, with the stored response it continues read from the store.

    A continued conversation is sent whole every time, and stored whole again: it may grow to
    CONVERSATION_BODIES request bodies, so that neither an upstream request nor what the store
    keeps of one grows without end.
    """
    body, request = read_responses(raw)
    previous = None
    if request.previous_response_id is not None:
        try:
            record = await store.get_response(team, request.previous_response_id)
        except StoreUnavailable:
            raise GatewayError(503, "The gateway cannot read the previous response right now; retry shortly.",
                               type="service_unavailable", code="store_unavailable",
                               headers={"retry-after": "1"}) from None
        limit = CONVERSATION_BODIES * max_body_bytes
        if record is not None and len(record) + len(raw) > limit:
            raise bad_request(f"The conversation of '{request.previous_response_id[:100]}' is {len(record)} bytes; "
                              f"continued, it would pass this gateway's limit of {limit} bytes. Start a new one "
                              "with the input it needs.", param="previous_response_id",
                              code="conversation_too_long")
        previous = from_bytes(record)
    return responses_call(body, request, previous, team, max_output_tokens)


def responses_call(body: dict[str, Any], request: ResponsesRequest, previous: StoredResponse | None, team: str,
                   max_output_tokens: int = MAX_OUTPUT_TOKENS) -> Call:
    """The call for a Responses request, after the stored response it continues (if any) was read."""
    items = request.input_items
    if request.previous_response_id is not None:
        items = expand(previous, request.previous_response_id, team, items)
    native = {name: value for name, value in body.items() if name not in _GATEWAY_ONLY}
    native["store"] = False  # the gateway keeps the conversation; the upstream need not
    if request.previous_response_id is not None:
        native["input"] = items
    if request.chat:
        call = checked_call(chat_body(request, items), "chat", max_output_tokens)
    else:
        call = _native_call(body, request, items, max_output_tokens)
    call.responses = ResponsesCall(request, items, native, new_head(request.model, request.echo))
    return call


def refuse_unservable(call: Call, features: Iterable[frozenset[str]]) -> None:
    """A request only a native route can serve, for a model with none: the 400 naming what it uses."""
    if NATIVE in call.needs and call.responses is not None and not any(NATIVE in f for f in features):
        refuse_untranslatable(call.responses.native)


def _native_only(body: dict[str, Any]) -> ResponsesRequest:
    """What the gateway itself reads of a request it cannot translate: the upstream checks the rest."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", param="model", code="missing_required_parameter")
    for name, kind in (("stream", bool), ("store", bool), ("previous_response_id", str), ("instructions", str),
                       ("max_output_tokens", int)):
        value = body.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
            raise bad_request(f"Invalid type for '{name}'.", param=name, code="invalid_type")
    given = body.get("input")
    if isinstance(given, str):
        items: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": given}]
    elif isinstance(given, list) and all(isinstance(item, dict) for item in given):
        items = given
    else:
        raise bad_request("'input' must be a string or an array of input items", param="input",
                          code="missing_required_parameter" if given is None else "invalid_type")
    return ResponsesRequest(model=model, stream=body.get("stream") is True, store=body.get("store") is not False,
                            previous_response_id=body.get("previous_response_id"),
                            instructions=body.get("instructions"), input_items=items, chat={}, echo={})


def _native_call(body: dict[str, Any], request: ResponsesRequest, items: list[dict[str, Any]],
                 max_output_tokens: int) -> Call:
    """A call with no chat body: bounded by the size of its input, for native routes only."""
    limit = body.get("max_output_tokens")
    if limit is not None and not 1 <= limit <= max_output_tokens:
        raise bad_request(f"max_output_tokens must be between 1 and {max_output_tokens}, got {limit}",
                          param="max_output_tokens", code="invalid_value")
    # Bytes bound a byte-level tokenizer's count: the whole input, the instructions and the tools.
    bound = len(orjson.dumps([items, request.instructions, body.get("tools")]))
    narrowing = body.get("gateway")
    if narrowing is not None and not isinstance(narrowing, dict):
        raise bad_request("'gateway' must be an object such as {\"providers\": [\"pool\"]}", param="gateway")
    return Call(endpoint="chat", body={"model": request.model}, model=request.model, stream=request.stream,
                wants_usage=False, max_tokens=limit, n=1, prompt_tokens_bound=bound, narrowing=narrowing,
                needs=frozenset({NATIVE}))
