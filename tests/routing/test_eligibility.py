"""Specifications of which routes may take a request at all: narrowing, features, context windows."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.call import Call, read_call
from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.routing import Router
from gateway.routing.cards import ModelCard
from gateway.routing.eligibility import eligible

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def routes(*entries: dict[str, Any], **providers: dict[str, Any]) -> list:
    spec = {name: {"api_key": "k", **p} for name, p in providers.items()}
    config = parse_config({"providers": spec, "models": {"m": {"routes": list(entries)}}}, {})
    return Router(config).routes["m"]


def chat(**fields: Any) -> Call:
    return read_call(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}), "chat")


def names(kept: list) -> list[str]:
    return [route.name for route in kept]


def refusal(kept_routes: list, call: Call, header: str | None = None) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        eligible("m", kept_routes, call, header)
    assert caught.value.status == 400
    return caught.value


PLAIN = routes({"provider": "netmind", "model": "x"}, {"provider": "novita", "model": "x"},
               netmind={"kind": "netmind"}, novita={"kind": "novita"})


def test_a_plain_request_may_take_every_route() -> None:
    assert names(eligible("m", PLAIN, chat(), None)) == ["netmind", "novita"]


def test_a_request_needing_a_feature_keeps_to_the_routes_that_honour_it() -> None:
    assert names(eligible("m", PLAIN, chat(tools=[TOOL]), None)) == ["novita"]
    assert names(eligible("m", PLAIN, chat(logprobs=True, top_logprobs=3), None)) == ["novita"]


def test_with_no_such_route_the_400_names_the_parameter_and_each_routes_reason() -> None:
    only_netmind = routes({"provider": "netmind", "model": "x"}, netmind={"kind": "netmind"})
    error = refusal(only_netmind, chat(tools=[TOOL], stream=True, logprobs=True))
    assert (error.param, error.code) == ("tools", "unsupported_parameter")
    assert "netmind does not support tools, tool_streaming, logprobs" in error.message


def test_narrowing_to_routes_that_cannot_says_it_was_narrowed() -> None:
    error = refusal(PLAIN, chat(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}),
                    header="netmind")
    assert error.param == "response_format" and "narrowed" in error.message


def test_a_feature_declared_on_one_route_is_that_routes_only() -> None:
    declared = routes({"provider": "netmind", "model": "small"},
                      {"provider": "netmind", "model": "big", "capabilities": {"tools": True}},
                      netmind={"kind": "netmind"})
    assert [r.upstream_model for r in eligible("m", declared, chat(tools=[TOOL]), None)] == ["big"]


def test_a_feature_may_be_declared_for_one_endpoint_or_taken_away() -> None:
    (route,) = routes({"provider": "nm", "model": "x"}, nm={"kind": "netmind", "capabilities": {
        "completions.logprobs": True}})
    assert "completions.logprobs" in route.features and "chat.logprobs" not in route.features
    (route,) = routes({"provider": "oa", "model": "x", "capabilities": {"vision": False}}, oa={"kind": "openai"})
    assert "chat.vision" not in route.features and "chat.tools" in route.features


def test_an_image_needs_a_route_that_sees_images() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    call = chat(messages=[{"role": "user", "content": [image]}])
    assert call.needs == {"chat.vision"}
    error = refusal(PLAIN, call)
    assert error.param == "messages" and "image inputs" in error.message


def test_a_published_context_window_counts_like_a_configured_one() -> None:
    (route,) = routes({"provider": "nv", "model": "x"}, nv={"kind": "novita"})
    route.endpoints[0].cards = {"x": ModelCard(context_window=100)}
    error = refusal([route], chat(max_tokens=500))
    assert error.code == "context_length_exceeded" and "100 tokens" in error.message
