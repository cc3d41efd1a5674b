"""Translating a client's call into the body one provider accepts.

Renames what the provider names differently, drops (or refuses) what it does not
take, refuses values outside its ranges before any upstream call, and always asks
for usage so that every stream can be billed.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.call import Call
from gateway.config import ProviderConfig
from gateway.errors import GatewayError, bad_request
from providers import Bounds
from providers.profile import CORE_PARAMS

# Fields only the gateway reads; no upstream ever sees them.
GATEWAY_FIELDS = frozenset({"gateway"})
_MAX_TOKENS = frozenset({"max_tokens", "max_completion_tokens"})


def upstream_body(call: Call, provider: ProviderConfig, upstream_model: str) -> bytes:
    """The bytes to send to `provider` for `call`; raise a 400 GatewayError naming a refused param."""
    profile = provider.profile
    if call.endpoint not in profile.endpoints:
        raise GatewayError(400, f"provider '{provider.name}' does not serve /{call.endpoint}",
                           param="model", retryable=True)
    body: dict[str, Any] = {}
    for name, value in call.body.items():
        if name in CORE_PARAMS or name in GATEWAY_FIELDS or name in _MAX_TOKENS:
            continue
        target = profile.renames.get(name, name)
        if target not in profile.params:
            if provider.unsupported_params == "reject":
                raise bad_request(f"'{name}' is not supported by provider '{provider.name}'",
                                  param=name, code="unsupported_parameter")
            continue
        _check_value(name, value, profile.params[target], provider)
        body[target] = value
    if call.max_tokens is not None:
        # Sent explicitly even when the client relied on a default, so that every
        # provider keeps OpenAI's default (16 on /completions) rather than its own.
        name = "max_completion_tokens" if "max_completion_tokens" in call.body else "max_tokens"
        target = profile.renames.get(name, name)
        _check_value(name, call.max_tokens, profile.params.get(target), provider)
        body[target] = call.max_tokens
    _check_stop(call.body.get("stop"), provider)
    if call.stream and call.n > 1 and not profile.streams_with_n:
        raise bad_request(f"provider '{provider.name}' cannot stream more than one choice", param="n")
    for name in ("messages", "prompt", "input"):
        if name in call.body:
            body[name] = call.body[name]
    body["model"] = upstream_model
    if call.stream:
        body["stream"] = True
        options = dict(call.body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    return orjson.dumps(body)


def _check_value(name: str, value: Any, bounds: Bounds | None, provider: ProviderConfig) -> None:
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not bounds.admits(value):
        raise bad_request(f"{name}={value!r} is out of range {bounds.describe()} for provider "
                          f"'{provider.name}'", param=name, code="invalid_value")


def _check_stop(stop: Any, provider: ProviderConfig) -> None:
    if isinstance(stop, list) and len(stop) > provider.profile.max_stop:
        raise bad_request(f"'stop' has {len(stop)} sequences; provider '{provider.name}' takes at most "
                          f"{provider.profile.max_stop}", param="stop", code="invalid_value")
