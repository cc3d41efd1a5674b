"""Specifications of a Responses request checked and translated to a Chat Completions body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.responses.request import chat_body, read_request

TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True}


def chat_for(**body: Any) -> dict[str, Any]:
    request = read_request(orjson.dumps({"model": "llama", "input": "hi", **body}))
    return chat_body(request, request.input_items)


def refusal(body: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        read_request(orjson.dumps(body))
    assert caught.value.status == 400
    return caught.value


def test_a_string_input_is_one_user_message_after_the_instructions() -> None:
    chat = chat_for(instructions="Answer in French.")
    assert chat == {"model": "llama", "stream": False, "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}


def test_a_stream_always_asks_the_provider_for_usage() -> None:
    chat = chat_for(stream=True, stream_options={"include_obfuscation": False})
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


def test_function_tools_take_the_chat_shape_and_tool_choice_follows() -> None:
    chat = chat_for(tools=[TOOL], tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False)
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city", "parameters": TOOL["parameters"], "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_a_tool_choice_mode_passes_as_it_is(choice: str) -> None:
    assert chat_for(tools=[TOOL], tool_choice=choice)["tool_choice"] == choice


def test_settings_without_tools_are_not_sent_to_a_provider_that_may_refuse_them() -> None:
    chat = chat_for(tool_choice="auto", parallel_tool_calls=True)
    assert "tool_choice" not in chat and "parallel_tool_calls" not in chat and "tools" not in chat


def test_a_json_schema_format_is_chat_structured_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = chat_for(text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True,
                                     "description": "A thing"}})
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True, "description": "A thing"}}


def test_json_object_and_text_formats() -> None:
    assert chat_for(text={"format": {"type": "json_object"}})["response_format"] == {"type": "json_object"}
    assert "response_format" not in chat_for(text={"format": {"type": "text"}})


def test_sampling_limits_and_identities_map_to_chat_names() -> None:
    chat = chat_for(max_output_tokens=50, temperature=0.2, top_p=0.9, user="u-1", safety_identifier="s",
                    prompt_cache_key="k", reasoning={"effort": "low"}, text={"verbosity": "low"})
    assert {k: chat[k] for k in ("max_tokens", "temperature", "top_p", "user", "safety_identifier",
                                 "prompt_cache_key", "reasoning_effort", "verbosity")} == {
        "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "user": "u-1", "safety_identifier": "s",
        "prompt_cache_key": "k", "reasoning_effort": "low", "verbosity": "low"}


def test_the_gateways_own_fields_are_kept_but_never_sent() -> None:
    request = read_request(orjson.dumps({"model": "m", "input": "hi", "metadata": {"ticket": "42"}, "store": False,
                                         "previous_response_id": "resp_1", "gateway": {"providers": ["pool"]}}))
    chat = chat_body(request, request.input_items)
    assert "metadata" not in chat and "store" not in chat and "previous_response_id" not in chat
    assert chat["gateway"] == {"providers": ["pool"]}
    assert request.echo["metadata"] == {"ticket": "42"} and request.store is False
    assert request.previous_response_id == "resp_1"


def test_a_request_stores_by_default_as_openai_does() -> None:
    assert read_request(b'{"model": "m", "input": "hi"}').store is True


def test_the_echo_shows_the_settings_as_the_api_does() -> None:
    request = read_request(orjson.dumps({"model": "m", "input": "hi", "tools": [TOOL], "instructions": "x"}))
    assert request.echo["tools"] == [TOOL] and request.echo["tool_choice"] == "auto"
    assert request.echo["parallel_tool_calls"] is True and request.echo["text"] == {"format": {"type": "text"}}
    assert request.echo["reasoning"] == {"effort": None, "summary": None} and request.echo["instructions"] == "x"


@pytest.mark.parametrize("body, param", [
    ({"input": "hi"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": []}, "input"),
    ({"model": "m", "input": 3}, "input"),
    ({"model": "m", "input": "hi", "temprature": 1}, "temprature"),
    ({"model": "m", "input": "hi", "temperature": "hot"}, "temperature"),
    ({"model": "m", "input": "hi", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "hi", "top_p": 1.5}, "top_p"),
    ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "hi", "max_output_tokens": True}, "max_output_tokens"),
    ({"model": "m", "input": "hi", "stream": "yes"}, "stream"),
    ({"model": "m", "input": "hi", "stream_options": {}}, "stream_options"),
    ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"model": "m", "input": "hi", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools[0].function"),
    ({"model": "m", "input": "hi", "tools": [TOOL, TOOL]}, "tools[1].name"),
    ({"model": "m", "input": "hi", "tools": [{**TOOL, "parameters": "{}"}]}, "tools[0].parameters"),
    ({"model": "m", "input": "hi", "tools": [TOOL] * 129}, "tools"),
    ({"model": "m", "input": "hi", "tool_choice": "any"}, "tool_choice"),
    ({"model": "m", "input": "hi", "tools": [TOOL], "tool_choice": {"type": "function", "name": "nope"}},
     "tool_choice.name"),
    ({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
    ({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"model": "m", "input": "hi", "text": {"format": {"type": "grammar"}}}, "text.format.type"),
    ({"model": "m", "input": "hi", "text": {"verbosity": "loud"}}, "text.verbosity"),
    ({"model": "m", "input": "hi", "text": {"style": "x"}}, "text.style"),
    ({"model": "m", "input": "hi", "reasoning": {"effort": "max"}}, "reasoning.effort"),
    ({"model": "m", "input": "hi", "metadata": {"k": 1}}, "metadata.k"),
    ({"model": "m", "input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"model": "m", "input": "hi", "include": [3]}, "include[0]"),
])
def test_a_bad_field_is_a_400_naming_it(body: dict[str, Any], param: str) -> None:
    assert refusal(body).param == param


@pytest.mark.parametrize("field, value, param", [
    ("tools", [{"type": "web_search"}], "tools[0].type"),
    ("tools", [{"type": "web_search_preview"}], "tools[0].type"),
    ("tools", [{"type": "file_search", "vector_store_ids": ["vs_1"]}], "tools[0].type"),
    ("tools", [{"type": "computer_use_preview", "display_width": 1, "display_height": 1, "environment": "linux"}],
     "tools[0].type"),
    ("tools", [{"type": "code_interpreter", "container": {"type": "auto"}}], "tools[0].type"),
    ("tools", [{"type": "image_generation"}], "tools[0].type"),
    ("tools", [{"type": "mcp", "server_label": "x", "server_url": "https://example.com"}], "tools[0].type"),
    ("tools", [{"type": "local_shell"}], "tools[0].type"),
    ("tools", [{"type": "custom", "name": "grammar_tool"}], "tools[0].type"),
    ("tool_choice", {"type": "web_search_preview"}, "tool_choice.type"),
    ("tool_choice", {"type": "allowed_tools", "mode": "auto", "tools": []}, "tool_choice.type"),
    ("background", True, "background"),
    ("conversation", "conv_1", "conversation"),
    ("prompt", {"id": "pmpt_1"}, "prompt"),
    ("truncation", "auto", "truncation"),
    ("max_tool_calls", 3, "max_tool_calls"),
    ("top_logprobs", 2, "top_logprobs"),
    ("include", ["message.output_text.logprobs"], "include[0]"),
    ("include", ["reasoning.encrypted_content", "file_search_call.results"], "include[1]"),
    ("reasoning", {"effort": "low", "summary": "auto"}, "reasoning.summary"),
    ("input", [{"type": "item_reference", "id": "msg_1"}], "input[0]"),
    ("input", [{"type": "reasoning", "id": "rs_1", "summary": []}], "input[0]"),
    ("input", [{"type": "web_search_call", "id": "ws_1", "status": "completed"}], "input[0].type"),
    ("input", [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}], "input[0].content[0]"),
    ("input", [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}],
     "input[0].content[0].file_id"),
])
def test_what_chat_cannot_carry_is_refused_by_name_never_dropped(field: str, value: Any, param: str) -> None:
    error = refusal({"model": "m", "input": "hi", field: value})
    assert error.param == param and error.code == "unsupported_parameter"
    assert "natively" in error.message
    assert orjson.loads(error.body())["error"]["param"] == param


def test_includes_that_ask_for_nothing_a_translation_has_are_accepted() -> None:
    chat_for(include=["reasoning.encrypted_content", "message.input_image.image_url"], store=False)


def test_the_defaults_of_native_only_fields_are_accepted() -> None:
    chat_for(background=False, truncation="disabled", top_logprobs=0, conversation=None, prompt=None)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]"])
def test_a_body_that_is_no_json_object_is_a_400(raw: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        read_request(raw)
    assert caught.value.status == 400 and caught.value.param is None
