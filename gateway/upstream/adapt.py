"""Translating a client's call into the body one route's provider accepts.

Every parameter keeps its meaning or is accounted for: sent (renamed where the provider
names it differently, refused before any upstream call when out of its range), or dropped
and listed in `x-gateway-dropped-params`. Only parameters that do not change an answer's
shape are ever dropped: the router sends a request that needs a feature only to routes that
honour it. Nothing is added but what accounting needs (`stream_options.include_usage`),
OpenAI's own defaults where a provider's differ, and a cap where a route's window is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.call import Call
from gateway.config import ProviderConfig
from gateway.errors import GatewayError, bad_request
from gateway.upstream.rerank import inference_request
from providers import Bounds
from providers.features import NATIVE_RESPONSES
from providers.params import KNOWN, OWNERS, PARAMS
from providers.profile import CORE_PARAMS

# Fields only the gateway reads; no upstream ever sees them.
GATEWAY_FIELDS = frozenset({"gateway"})
_MAX_TOKENS = frozenset({"max_tokens", "max_completion_tokens"})
_HANDLED = CORE_PARAMS | GATEWAY_FIELDS | _MAX_TOKENS
# What the request itself is, per endpoint: sent as it came, to every provider.
_CORE = {"chat": ("messages",), "completions": ("prompt",), "embeddings": ("input",), "rerank": ("query", "documents")}


class Destination(Protocol):
    """Where a body goes (a routing.Route): a provider, its model id, what it honours, its window."""

    provider: ProviderConfig
    upstream_model: str
    features: frozenset[str]

    def window(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    body: bytes
    dropped: tuple[str, ...]  # the client's parameters this provider is not sent
    path: str  # where under the route's base URL: the call's own, or /responses at a native route
    beside: str = ""  # the end of the base URL the path replaces (DeepInfra's /inference is beside /openai)

    def url(self, base: str) -> str:
        return base.removesuffix(self.beside) + self.path


def upstream_body(call: Call, route: Destination) -> Outgoing:
    """What to send to `route` for `call`; raise a 400 GatewayError naming a refused parameter."""
    if call.responses is not None and NATIVE_RESPONSES in route.features:
        return _native_responses(call, route)
    provider = route.provider
    profile = provider.profile
    if call.endpoint == "rerank" and profile.rerank_by_inference and call.endpoint in profile.endpoints:
        body, path, beside = inference_request(call, route.upstream_model)
        return Outgoing(orjson.dumps(body), (), path, beside)
    if call.endpoint not in profile.endpoints:
        raise GatewayError(400, f"provider '{provider.name}' does not serve /{call.endpoint}",
                           param="model", retryable=True)
    body: dict[str, Any] = {}
    dropped: list[str] = []
    endpoint_params, owners = PARAMS[call.endpoint], OWNERS[call.endpoint]
    core = _CORE[call.endpoint]
    for name, value in call.body.items():
        if name in _HANDLED or name in core:
            continue
        target = profile.renames.get(name, name)
        if name in owners:
            sent = target in profile.params or any(f"{call.endpoint}.{f}" in route.features for f in owners[name])
            if name == "encoding_format" and call.wants_base64 and "embeddings.base64" not in route.features:
                continue  # asked as floats, encoded by the gateway (gateway.upstream.vectors)
        elif name in endpoint_params:
            sent = target in profile.params
        else:
            # Known for another endpoint only (a chat request's `suffix`): meaningless here, never sent.
            sent = name not in KNOWN and profile.forwards_unknown
        if not sent:
            if provider.unsupported_params == "reject":
                raise bad_request(f"'{name}' is not supported by provider '{provider.name}' on "
                                  f"/{call.endpoint}", param=name, code="unsupported_parameter")
            dropped.append(name)
            continue
        _check_value(name, value, profile.params.get(target), provider)
        body[target] = value
    max_tokens = _max_tokens(call, route)
    if max_tokens is not None:
        name = "max_completion_tokens" if "max_completion_tokens" in call.body else "max_tokens"
        target = profile.renames.get(name, name)
        _check_value(name, max_tokens, profile.params.get(target), provider)
        body[target] = max_tokens
    _check_stop(call.body.get("stop"), provider)
    if call.stream and call.n > 1 and not profile.streams_with_n:
        raise bad_request(f"provider '{provider.name}' cannot stream more than one choice", param="n")
    for name in core:
        if name in call.body:
            body[name] = call.body[name]
    body["model"] = route.upstream_model
    if call.stream:
        body["stream"] = True
        options = dict(call.body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    return Outgoing(orjson.dumps(body), tuple(dropped), call.path)


def _native_responses(call: Call, route: Destination) -> Outgoing:
    """A Responses request as the client wrote it (its stored conversation put in front), to an
    upstream that serves the API itself: only the model and a cap on its output are the route's."""
    assert call.responses is not None
    body = {**call.responses.native, "model": route.upstream_model}
    limit = _max_tokens(call, route)
    if limit is not None:
        body["max_output_tokens"] = limit
    return Outgoing(orjson.dumps(body), (), "/responses")


def _max_tokens(call: Call, route: Destination) -> int | None:
    """The client's limit; else, on a route whose window is unknown, the cap admission reserved."""
    if call.max_tokens is not None or call.blind_max_tokens is None:
        return call.max_tokens
    return call.blind_max_tokens if route.window() is None else None


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
