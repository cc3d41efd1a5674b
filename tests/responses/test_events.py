"""Specifications of chat chunks turned into Responses streaming events: golden sequences per answer shape."""

from __future__ import annotations

from typing import Any

from gateway.responses.answer import from_completion, new_head
from gateway.responses.events import ResponseEvents
from gateway.responses.request import read_request
from tests.responses.chats import USAGE, call_delta, chunk, completion, text_stream
from tests.responses.sdk_types import events_of, types, valid_response

ECHO = read_request(b'{"model": "llama", "input": "hi"}').echo
OPENING = ["response.created", "response.in_progress"]
TEXT_ITEM = ["response.output_item.added", "response.content_part.added"]
TEXT_DONE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
CALL_DONE = ["response.function_call_arguments.done", "response.output_item.done"]


def stream(chunks: list[dict[str, Any]], end: str = "finish") -> tuple[list[dict[str, Any]], ResponseEvents]:
    translator = ResponseEvents(new_head("llama", ECHO))
    raw = translator.start() + b"".join(translator.feed(c) for c in chunks)
    raw += translator.finish() if end == "finish" else translator.fail("provider 'deepinfra' stopped mid-answer")
    events = events_of(raw)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events, translator


def final(events: list[dict[str, Any]]) -> dict[str, Any]:
    return valid_response(events[-1]["response"])


def same_answer(streamed: dict[str, Any], whole: dict[str, Any]) -> bool:
    def strip(response: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in response.items() if k != "completed_at"}
    return strip(streamed) == strip(whole)


def test_a_text_answer() -> None:
    events, translator = stream(text_stream("Hel", "lo!"))
    assert types(events) == OPENING + TEXT_ITEM + ["response.output_text.delta"] * 2 + TEXT_DONE + [
        "response.completed"]
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    item_id = events[2]["item"]["id"]
    assert events[2]["item"] == {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress",
                                 "content": []}
    assert [(e["item_id"], e["output_index"], e["content_index"], e["delta"], e["logprobs"]) for e in events[4:6]] \
        == [(item_id, 0, 0, "Hel", []), (item_id, 0, 0, "lo!", [])]
    assert events[6]["text"] == "Hello!" and events[8]["item"]["status"] == "completed"
    response = final(events)
    assert response["status"] == "completed" and response["usage"]["output_tokens"] == 7
    head = translator._head
    assert same_answer(response, from_completion(completion("Hello!"), head))
    assert translator.response == response


def test_a_tool_call() -> None:
    events, translator = stream([chunk({"role": "assistant", "content": None}),
                                 chunk(call_delta(0, "call_1", "weather")),
                                 chunk(call_delta(0, arguments='{"c":')), chunk(call_delta(0, arguments='"Paris"}')),
                                 chunk({}, "tool_calls"), chunk(usage=USAGE)])
    assert types(events) == OPENING + ["response.output_item.added"] + [
        "response.function_call_arguments.delta"] * 2 + CALL_DONE + ["response.completed"]
    added = events[2]["item"]
    assert (added["type"], added["call_id"], added["name"], added["arguments"], added["status"]) == (
        "function_call", "call_1", "weather", "", "in_progress")
    assert [e["delta"] for e in events[3:5]] == ['{"c":', '"Paris"}']
    assert events[5]["arguments"] == '{"c":"Paris"}' and events[6]["item"]["arguments"] == '{"c":"Paris"}'
    assert same_answer(final(events), from_completion(
        completion(None, [("call_1", "weather", '{"c":"Paris"}')], "tool_calls"), translator._head))


def test_parallel_tool_calls_interleaved_by_index() -> None:
    events, translator = stream([chunk(call_delta(0, "call_a", "weather", '{"c":')),
                                 chunk(call_delta(1, "call_b", "weather", '{"c":')),
                                 chunk(call_delta(0, arguments='"Paris"}')), chunk(call_delta(1, arguments='"Rome"}')),
                                 chunk({}, "tool_calls"), chunk(usage=USAGE)])
    assert types(events) == OPENING + [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
    ] + CALL_DONE * 2 + ["response.completed"]
    assert [(e["output_index"], e["delta"]) for e in events if e["type"].endswith("arguments.delta")] == [
        (0, '{"c":'), (1, '{"c":'), (0, '"Paris"}'), (1, '"Rome"}')]
    assert same_answer(final(events), from_completion(completion(None, [
        ("call_a", "weather", '{"c":"Paris"}'), ("call_b", "weather", '{"c":"Rome"}')], "tool_calls"),
        translator._head))


def test_text_then_a_tool_call_closes_the_message_first() -> None:
    events, translator = stream([chunk({"role": "assistant", "content": "Let me check."}),
                                 chunk(call_delta(0, "call_1", "weather", "{}")),
                                 chunk({}, "tool_calls"), chunk(usage=USAGE)])
    assert types(events) == OPENING + TEXT_ITEM + ["response.output_text.delta"] + TEXT_DONE + [
        "response.output_item.added", "response.function_call_arguments.delta"] + CALL_DONE + ["response.completed"]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1]
    assert same_answer(final(events), from_completion(
        completion("Let me check.", [("call_1", "weather", "{}")], "tool_calls"), translator._head))


def test_a_length_cut_is_response_incomplete_with_usage() -> None:
    events, translator = stream(text_stream("Once upon", finish="length"))
    assert types(events)[-4:] == TEXT_DONE + ["response.incomplete"]
    response = final(events)
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete" and response["usage"]["total_tokens"] == 19
    assert same_answer(response, from_completion(completion("Once upon", finish="length"), translator._head))


def test_an_upstream_error_mid_stream_is_response_failed_with_the_output_so_far() -> None:
    events, _translator = stream([chunk({"role": "assistant", "content": "Half an ans"})], end="fail")
    assert types(events) == OPENING + TEXT_ITEM + ["response.output_text.delta", "response.failed"]
    response = final(events)
    assert response["status"] == "failed"
    assert response["error"] == {"code": "server_error", "message": "provider 'deepinfra' stopped mid-answer"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["output"][0]["content"][0]["text"] == "Half an ans"


def test_usage_on_the_finish_chunk_as_deepinfra_sends_it() -> None:
    events, _ = stream([chunk({"role": "assistant", "content": "Hi"}), chunk({}, "stop", usage=USAGE)])
    assert final(events)["usage"]["input_tokens"] == 12


def test_an_empty_answer_is_one_empty_message_as_a_whole_answer_is() -> None:
    events, translator = stream([chunk({"role": "assistant", "content": ""}), chunk({}, "stop"), chunk(usage=USAGE)])
    assert types(events) == OPENING + TEXT_ITEM + TEXT_DONE + ["response.completed"]
    assert same_answer(final(events), from_completion(completion(""), translator._head))


def test_a_call_whose_name_comes_late_is_added_once_named_with_the_arguments_held_back() -> None:
    events, _ = stream([chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
                        chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": ":1}"}}]}),
                        chunk({}, "tool_calls")])
    assert types(events)[2:4] == ["response.output_item.added", "response.function_call_arguments.delta"]
    assert events[3]["delta"] == '{"a":1}' and final(events)["output"][0]["call_id"] == "c"


def test_calls_without_an_index_are_told_apart_by_their_ids() -> None:
    events, _ = stream([chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}]}),
                        chunk({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
                        chunk({}, "tool_calls")])
    assert [(i["call_id"], i["name"]) for i in final(events)["output"]] == [("a", "f"), ("b", "g")]


def test_nothing_follows_the_final_event() -> None:
    translator = ResponseEvents(new_head("llama", ECHO))
    translator.start()
    translator.finish()
    assert translator.feed(chunk({"content": "late"})) == translator.finish() == translator.fail("x") == b""


def test_a_failure_before_any_chunk_still_opens_the_response_for_the_sdk() -> None:
    translator = ResponseEvents(new_head("llama", ECHO))
    assert types(events_of(translator.fail("upstream timed out"))) == OPENING + ["response.failed"]
