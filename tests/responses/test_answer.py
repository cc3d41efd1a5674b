"""Specifications of a whole chat completion turned into a Responses response object."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.responses.answer import from_completion, new_head, response_usage
from gateway.responses.request import read_request
from tests.responses.chats import completion
from tests.responses.sdk_types import valid_response

ECHO = read_request(b'{"model": "llama", "input": "hi", "instructions": "Be brief.", "metadata": {"k": "v"},'
                    b' "temperature": 0.5, "max_output_tokens": 64}').echo


def answer(body: object) -> dict:
    return valid_response(from_completion(body, new_head("llama", ECHO)))


def test_a_text_answer_is_one_completed_message_with_usage_and_the_echoed_settings() -> None:
    response = answer(completion("Hello!"))
    assert response["id"].startswith("resp_") and response["object"] == "response"
    assert response["status"] == "completed" and response["incomplete_details"] is None
    assert response["model"] == "llama" and response["error"] is None
    [message] = response["output"]
    assert message["id"].startswith("msg_") and message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}]
    assert response["usage"] == {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4,
                                                                               "cache_write_tokens": 0},
                                 "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2},
                                 "total_tokens": 19}
    assert (response["instructions"], response["metadata"], response["temperature"],
            response["max_output_tokens"]) == ("Be brief.", {"k": "v"}, 0.5, 64)


def test_the_sdk_reads_output_text_from_the_message() -> None:
    from openai.types.responses import Response
    assert Response.model_validate(answer(completion("Hello!"))).output_text == "Hello!"


def test_tool_calls_are_function_call_items_after_the_text() -> None:
    response = answer(completion("Checking.", [("call_1", "weather", '{"c":"Paris"}'),
                                               ("call_2", "weather", '{"c":"Rome"}')], finish="tool_calls"))
    assert [item["type"] for item in response["output"]] == ["message", "function_call", "function_call"]
    first = response["output"][1]
    assert first["id"].startswith("fc_") and (first["call_id"], first["name"], first["arguments"], first["status"]) \
        == ("call_1", "weather", '{"c":"Paris"}', "completed")
    assert response["status"] == "completed"


def test_a_call_only_answer_has_no_empty_message() -> None:
    response = answer(completion(None, [("call_1", "f", "{}")], finish="tool_calls"))
    assert [item["type"] for item in response["output"]] == ["function_call"]


def test_arguments_sent_as_an_object_become_json_text_and_a_missing_call_id_is_made_up() -> None:
    body = completion(None)
    body["choices"][0]["message"]["tool_calls"] = [{"type": "function", "function": {"name": "f",
                                                                                     "arguments": {"a": 1}}}]
    [call] = answer(body)["output"]
    assert call["arguments"] == '{"a":1}' and call["call_id"].startswith("call_")


@pytest.mark.parametrize("finish, reason", [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_a_cut_answer_is_incomplete_with_its_reason(finish: str, reason: str) -> None:
    response = answer(completion("Once upon a", finish=finish))
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": reason}
    assert response["output"][0]["status"] == "incomplete" and response["completed_at"] is None


def test_an_empty_answer_is_one_empty_message() -> None:
    [message] = answer(completion(""))["output"]
    assert message["content"][0]["text"] == ""


def test_usage_figures_that_are_no_counts_read_as_zero_and_missing_usage_as_none() -> None:
    assert response_usage({"prompt_tokens": -1, "completion_tokens": "7", "total_tokens": None}) == {
        "input_tokens": 0, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}
    body = completion("x")
    del body["usage"]
    assert answer(body)["usage"] is None


@pytest.mark.parametrize("body", [[], {"choices": []}, {"choices": [3]}, {"choices": [{"message": "x"}]}])
def test_an_upstream_body_without_an_answer_is_a_502(body: object) -> None:
    with pytest.raises(GatewayError) as caught:
        from_completion(body, new_head("llama", ECHO))
    assert caught.value.status == 502 and caught.value.retryable
