"""Specifications of the body each provider gets: renamed, trimmed, range-checked, always asking for usage."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.call import Call, read_call
from gateway.config import ProviderConfig, RouteConfig, RoutingConfig, parse_config
from gateway.errors import GatewayError
from gateway.routing import Endpoint, Route
from gateway.upstream.adapt import Outgoing, upstream_body

HELLO = [{"role": "user", "content": "Hello"}]


def provider(kind: str, name: str | None = None, **spec: Any) -> ProviderConfig:
    name = name or kind
    config = parse_config({"providers": {name: {"kind": kind, "api_key": "k", **spec}}}, {})
    return config.providers[name]


def chat(**fields: Any) -> Call:
    return read_call(orjson.dumps({"model": "llama-3.1-8b", "messages": HELLO, **fields}), "chat")


def route_to(to: ProviderConfig, upstream_model: str = "upstream/model-id", **spec: Any) -> Route:
    config = RouteConfig(provider=to.name, model=upstream_model, **spec)
    return Route("llama-3.1-8b", to, config, 0, [Endpoint("http://127.0.0.1:9/v1")], RoutingConfig())


def outgoing(call: Call, to: ProviderConfig, **route: Any) -> Outgoing:
    return upstream_body(call, route_to(to, **route))


def sent(call: Call, to: ProviderConfig, upstream_model: str = "upstream/model-id", **route: Any) -> dict[str, Any]:
    return orjson.loads(outgoing(call, to, upstream_model=upstream_model, **route).body)


def refused(call: Call, to: ProviderConfig) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        outgoing(call, to)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


# --- max tokens -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["deepinfra", "novita", "netmind", "deeptrin"])
def test_max_completion_tokens_is_sent_as_max_tokens_to_providers_that_know_only_that(kind: str) -> None:
    body = sent(chat(max_completion_tokens=100), provider(kind))
    assert body["max_tokens"] == 100
    assert "max_completion_tokens" not in body


def test_max_completion_tokens_is_kept_for_openai() -> None:
    body = sent(chat(max_completion_tokens=100), provider("openai"))
    assert body["max_completion_tokens"] == 100
    assert "max_tokens" not in body


@pytest.mark.parametrize("kind", ["openai", "deepinfra", "novita", "vllm"])
def test_max_tokens_is_sent_as_max_tokens(kind: str) -> None:
    body = sent(chat(max_tokens=77), provider(kind))
    assert body["max_tokens"] == 77
    assert "max_completion_tokens" not in body


def test_a_chat_without_max_tokens_sends_none() -> None:
    body = sent(chat(), provider("deepinfra"))
    assert "max_tokens" not in body and "max_completion_tokens" not in body


def test_legacy_completions_send_openai_default_of_16_max_tokens() -> None:
    call = read_call(orjson.dumps({"model": "m", "prompt": "Once upon"}), "completions")
    assert sent(call, provider("deepinfra"))["max_tokens"] == 16


# --- unsupported parameters ------------------------------------------------------------------

def test_an_unsupported_param_is_dropped_by_default() -> None:
    body = sent(chat(logit_bias={"50256": -100}, temperature=0.5), provider("deepinfra"))
    assert "logit_bias" not in body
    assert body["temperature"] == 0.5


def test_an_unsupported_param_is_refused_when_the_provider_rejects_them() -> None:
    error = refused(chat(logit_bias={"50256": -100}), provider("deepinfra", unsupported_params="reject"))
    assert (error.message, error.param, error.code) == (
        "'logit_bias' is not supported by provider 'deepinfra' on /chat", "logit_bias", "unsupported_parameter")


def test_the_refusal_names_the_configured_provider_not_its_kind() -> None:
    error = refused(chat(top_k=40), provider("netmind", name="nm-eu", unsupported_params="reject"))
    assert error.message == "'top_k' is not supported by provider 'nm-eu' on /chat"


def test_supported_params_pass_unchanged() -> None:
    fields = {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5,
              "frequency_penalty": -0.5, "repetition_penalty": 1.1, "seed": 7, "user": "u-1",
              "response_format": {"type": "json_object"}}
    body = sent(chat(**fields), provider("deepinfra", unsupported_params="reject"))
    for name, value in fields.items():
        assert body[name] == value


def test_a_vllm_pool_gets_the_tool_and_format_fields_it_serves_unchanged() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    fields = {"tools": [tool], "tool_choice": "required", "parallel_tool_calls": False,
              "response_format": {"type": "json_schema", "json_schema": {"name": "v", "schema": {"type": "object"}}}}
    body = sent(chat(**fields), provider("vllm", unsupported_params="reject"))
    for name, value in fields.items():
        assert body[name] == value


def test_a_limit_override_true_lets_a_param_through() -> None:
    body = sent(chat(logit_bias={"1": 2}), provider("deepinfra", limits={"logit_bias": True},
                                                    unsupported_params="reject"))
    assert body["logit_bias"] == {"1": 2}


def test_a_limit_override_false_drops_a_param() -> None:
    assert "top_k" not in sent(chat(top_k=40), provider("deepinfra", limits={"top_k": False}))
    error = refused(chat(top_k=40), provider("deepinfra", limits={"top_k": False}, unsupported_params="reject"))
    assert (error.param, error.code) == ("top_k", "unsupported_parameter")


def test_a_limit_override_range_is_enforced() -> None:
    error = refused(chat(temperature=1.2), provider("deepinfra", limits={"temperature": [0, 1]}))
    assert (error.message, error.param, error.code) == (
        "temperature=1.2 is out of range [0, 1] for provider 'deepinfra'", "temperature", "invalid_value")


# --- ranges ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "message"), [
    ("n", 5, "n=5 is out of range [1, 4] for provider 'deepinfra'"),
    ("top_p", 0, "top_p=0 is out of range (0, 1] for provider 'deepinfra'"),
    ("temperature", 2.5, "temperature=2.5 is out of range [0, 2] for provider 'deepinfra'"),
    ("repetition_penalty", 6, "repetition_penalty=6 is out of range [0.01, 5] for provider 'deepinfra'"),
    ("top_k", 1000, "top_k=1000 is out of range [0, 999] for provider 'deepinfra'"),
    ("presence_penalty", -2.5, "presence_penalty=-2.5 is out of range [-2, 2] for provider 'deepinfra'"),
])
def test_an_out_of_range_value_is_refused_naming_the_param(field: str, value: Any, message: str) -> None:
    error = refused(chat(**{field: value}), provider("deepinfra"))
    assert (error.message, error.param, error.code) == (message, field, "invalid_value")


@pytest.mark.parametrize(("field", "value"), [("n", 4), ("top_p", 1), ("top_p", 0.01), ("temperature", 2),
                                              ("temperature", 0), ("repetition_penalty", 5),
                                              ("repetition_penalty", 0.01)])
def test_a_value_at_the_edge_of_its_range_is_accepted(field: str, value: Any) -> None:
    assert sent(chat(**{field: value}), provider("deepinfra"))[field] == value


def test_the_same_value_may_suit_one_provider_and_not_another() -> None:
    assert sent(chat(n=5), provider("openai"))["n"] == 5
    assert refused(chat(n=5), provider("deepinfra")).param == "n"


def test_stop_with_five_entries_is_refused_for_openai() -> None:
    error = refused(chat(stop=["a", "b", "c", "d", "e"]), provider("openai"))
    assert (error.message, error.param, error.code) == (
        "'stop' has 5 sequences; provider 'openai' takes at most 4", "stop", "invalid_value")


def test_stop_with_sixteen_entries_is_accepted_by_deepinfra() -> None:
    stop = [f"s{i}" for i in range(16)]
    assert sent(chat(stop=stop), provider("deepinfra"))["stop"] == stop
    assert refused(chat(stop=stop + ["s16"]), provider("deepinfra")).param == "stop"


def test_a_single_stop_string_is_always_accepted() -> None:
    assert sent(chat(stop="END"), provider("openai"))["stop"] == "END"


def test_a_stop_limit_override_is_enforced() -> None:
    error = refused(chat(stop=["a", "b", "c"]), provider("deepinfra", limits={"stop": 2}))
    assert error.message == "'stop' has 3 sequences; provider 'deepinfra' takes at most 2"


# --- model, stream, passthrough -------------------------------------------------------------

def test_the_routes_upstream_model_id_replaces_the_public_one() -> None:
    body = sent(chat(), provider("novita"), "meta-llama/llama-3.1-8b-instruct")
    assert body["model"] == "meta-llama/llama-3.1-8b-instruct"


def test_a_stream_always_asks_the_upstream_for_usage() -> None:
    body = sent(chat(stream=True), provider("novita"))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_a_stream_asks_for_usage_even_when_the_client_declined_and_keeps_its_other_options() -> None:
    body = sent(chat(stream=True, stream_options={"include_usage": False, "continuous_usage_stats": True}),
                provider("vllm"))
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def test_the_client_call_is_not_changed_by_adapting_it() -> None:
    call = chat(stream=True, stream_options={"include_usage": False})
    sent(call, provider("vllm"))
    assert call.body["stream_options"] == {"include_usage": False}


def test_a_non_stream_call_sends_no_stream_fields() -> None:
    body = sent(chat(stream=False), provider("deepinfra"))
    assert "stream" not in body and "stream_options" not in body


@pytest.mark.parametrize("kind", ["openai", "deepinfra", "novita", "netmind", "deeptrin", "vllm"])
def test_the_gateway_field_never_reaches_an_upstream(kind: str) -> None:
    body = sent(chat(gateway={"providers": ["pool"]}), provider(kind, unsupported_params="reject"))
    assert "gateway" not in body


def test_messages_pass_through_unchanged() -> None:
    messages = [{"role": "system", "content": "Réponds en français."},
                {"role": "user", "content": [{"type": "text", "text": "日本"}]},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function",
                                 "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    assert sent(chat(messages=messages), provider("deepinfra"))["messages"] == messages


@pytest.mark.parametrize("prompt", ["Once upon", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_prompt_passes_through_unchanged(prompt: Any) -> None:
    call = read_call(orjson.dumps({"model": "m", "prompt": prompt}), "completions")
    assert sent(call, provider("novita"))["prompt"] == prompt


@pytest.mark.parametrize("value", ["hello", ["a", "b"], [[101, 102]]])
def test_embeddings_input_passes_through_unchanged(value: Any) -> None:
    call = read_call(orjson.dumps({"model": "e5", "input": value, "encoding_format": "float"}), "embeddings")
    body = sent(call, provider("deepinfra"), "BAAI/bge-m3")
    assert body == {"input": value, "encoding_format": "float", "model": "BAAI/bge-m3"}


# --- what a provider is sent: the endpoint's parameters, the authority's unknowns, features --------


@pytest.mark.parametrize("kind", ["openai", "vllm"])
def test_a_parameter_the_gateway_does_not_know_goes_to_the_apis_authorities(kind: str) -> None:
    out = outgoing(chat(brand_new_knob={"level": 3}), provider(kind))
    assert orjson.loads(out.body)["brand_new_knob"] == {"level": 3} and out.dropped == ()


@pytest.mark.parametrize("kind", ["netmind", "deeptrin", "novita", "deepinfra"])
def test_a_parameter_the_gateway_does_not_know_is_dropped_and_listed_elsewhere(kind: str) -> None:
    out = outgoing(chat(brand_new_knob=1, seed=3), provider(kind))
    assert "brand_new_knob" not in orjson.loads(out.body) and "brand_new_knob" in out.dropped


@pytest.mark.parametrize("kind", ["openai", "vllm", "novita"])
def test_a_parameter_of_another_endpoint_is_never_sent(kind: str) -> None:
    out = outgoing(chat(suffix="the end"), provider(kind))
    assert "suffix" not in orjson.loads(out.body) and out.dropped == ("suffix",)
    embed = read_call(orjson.dumps({"model": "m", "input": "hi", "temperature": 0.3}), "embeddings")
    out = outgoing(embed, provider(kind))
    assert "temperature" not in orjson.loads(out.body) and out.dropped == ("temperature",)


def test_what_openai_added_lately_reaches_openai() -> None:
    fields = {"verbosity": "low", "web_search_options": {}, "safety_identifier": "u-9", "prompt_cache_key": "k",
              "reasoning_effort": "low", "max_completion_tokens": 300}
    out = outgoing(chat(**fields), provider("openai"))
    assert {k: orjson.loads(out.body)[k] for k in fields} == fields and out.dropped == ()


def test_vllm_is_sent_its_own_extensions() -> None:
    fields = {"parallel_tool_calls": False, "chat_template_kwargs": {"enable_thinking": False},
              "guided_json": {"type": "object"}, "structured_outputs": {"choice": ["a", "b"]},
              "continue_final_message": True, "add_generation_prompt": False, "skip_special_tokens": False,
              "include_stop_str_in_output": True, "reasoning_effort": "low", "min_tokens": 2}
    out = outgoing(chat(**fields), provider("vllm", unsupported_params="reject"))
    assert {k: orjson.loads(out.body)[k] for k in fields} == fields and out.dropped == ()


def test_a_feature_declared_in_config_sends_its_parameters() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    call = chat(tools=tools, tool_choice="auto")
    assert "tools" not in sent(call, provider("netmind"))
    body = sent(call, provider("netmind", capabilities={"tools": True}))
    assert body["tools"] == tools and body["tool_choice"] == "auto"
    body = sent(call, provider("netmind"), capabilities={"tools": True})  # or on one route only
    assert body["tools"] == tools


def test_a_parameter_that_changes_nothing_without_its_feature_is_dropped_and_listed() -> None:
    out = outgoing(chat(response_format={"type": "text"}, logprobs=False, metadata={"a": "b"}), provider("netmind"))
    assert set(out.dropped) == {"response_format", "logprobs", "metadata"}


def test_base64_embeddings_are_asked_as_floats_where_the_provider_has_only_floats() -> None:
    call = read_call(orjson.dumps({"model": "m", "input": "hi", "encoding_format": "base64"}), "embeddings")
    assert call.wants_base64
    out = outgoing(call, provider("deepinfra"))
    assert "encoding_format" not in orjson.loads(out.body) and out.dropped == ()
    assert orjson.loads(outgoing(call, provider("openai")).body)["encoding_format"] == "base64"


# --- max_tokens where the client named none ----------------------------------------------------


def test_a_cap_is_sent_only_where_the_routes_window_is_unknown() -> None:
    call = chat()
    call.blind_max_tokens = 4096
    assert sent(call, provider("deepinfra"))["max_tokens"] == 4096
    assert "max_tokens" not in sent(call, provider("deepinfra"), context_window=131072)
    assert "max_completion_tokens" not in sent(call, provider("openai"), context_window=128000)


def test_the_clients_own_limit_keeps_its_name_where_the_provider_takes_it() -> None:
    call = chat(max_completion_tokens=50)
    call.blind_max_tokens = 4096
    assert sent(call, provider("openai"))["max_completion_tokens"] == 50
    assert sent(call, provider("vllm"))["max_completion_tokens"] == 50
    assert sent(call, provider("netmind"))["max_tokens"] == 50
