"""Specifications of input items checked and turned into chat messages."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.responses.items import input_items, messages


def chat_of(*items: dict[str, Any]) -> list[dict[str, Any]]:
    return messages(input_items(list(items)))


def test_roles_and_string_content_map_one_to_one_and_developer_is_system() -> None:
    assert chat_of({"role": "system", "content": "s"}, {"role": "developer", "content": "d"},
                   {"type": "message", "role": "user", "content": "u"}, {"role": "assistant", "content": "a"}) == [
        {"role": "system", "content": "s"}, {"role": "system", "content": "d"},
        {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]


def test_user_parts_become_chat_text_and_image_parts() -> None:
    item = {"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
        {"type": "input_image", "image_url": "https://example.com/cat.png"}]}
    assert chat_of(item) == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]


def test_an_earlier_output_message_is_assistant_text_whatever_its_ids_and_annotations() -> None:
    item = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [
        {"type": "output_text", "text": "Hello ", "annotations": [], "logprobs": []},
        {"type": "output_text", "text": "there", "annotations": []}]}
    assert chat_of(item) == [{"role": "assistant", "content": "Hello there"}]


def test_tool_calls_and_their_outputs_round_trip_as_chat_history() -> None:
    history = chat_of(
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "weather", "arguments": '{"c":"Paris"}',
         "status": "completed"},
        {"type": "function_call", "call_id": "call_b", "name": "weather", "arguments": '{"c":"Rome"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "21C"}]},
        {"role": "assistant", "content": "Paris 18C, Rome 21C."})
    assert history == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"c":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"c":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "21C"},
        {"role": "assistant", "content": "Paris 18C, Rome 21C."}]


def test_a_call_after_assistant_text_joins_that_turn() -> None:
    history = chat_of({"role": "assistant", "content": "Let me look."},
                      {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"})
    assert history == [{"role": "assistant", "content": "Let me look.", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]


def test_calls_after_a_tool_result_start_a_new_assistant_turn() -> None:
    history = chat_of({"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "a", "output": "1"},
                      {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"})
    assert [m["role"] for m in history] == ["assistant", "tool", "assistant"]


def test_a_string_input_is_a_user_message_item() -> None:
    assert input_items("hi") == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]


@pytest.mark.parametrize("item, param", [
    ("hello", "input[0]"),
    ({"role": "tool", "content": "x"}, "input[0].role"),
    ({"role": "user"}, "input[0].content"),
    ({"role": "user", "content": 5}, "input[0].content"),
    ({"role": "user", "content": [{"type": "output_text", "text": "x"}]}, "input[0].content[0]"),
    ({"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]}, "input[0].content[0]"),
    ({"role": "user", "content": [{"type": "input_image"}]}, "input[0].content[0].image_url"),
    ({"role": "user", "content": [{"type": "input_image", "image_url": "https://x", "detail": "max"}]},
     "input[0].content[0].detail"),
    ({"role": "user", "content": [{"type": "input_text"}]}, "input[0].content[0].text"),
    ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}, "input[0].content[0]"),
    ({"role": "user", "content": "x", "name": "bob"}, "input[0].name"),
    ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[0].call_id"),
    ({"type": "function_call", "call_id": "c", "arguments": "{}"}, "input[0].name"),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}, "input[0].arguments"),
    ({"type": "function_call_output", "output": "x"}, "input[0].call_id"),
    ({"type": "function_call_output", "call_id": "c"}, "input[0].output"),
    ({"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "https://x"}]},
     "input[0].output[0]"),
    ({"type": "compaction", "id": "x"}, "input[0].type"),
])
def test_a_bad_item_is_a_400_naming_where_it_is(item: Any, param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        input_items([item])
    assert caught.value.status == 400 and caught.value.param == param
