"""Specifications of the features that keep a Responses request to native routes."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.responses.features import needs


def test_a_plain_request_with_function_tools_needs_no_native_route() -> None:
    assert needs({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}],
                  "include": ["reasoning.encrypted_content"], "background": False}) == frozenset()


def test_each_untranslatable_part_is_named_once() -> None:
    body = {"model": "m", "background": True, "conversation": {"id": "conv_1"}, "truncation": "auto",
            "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}, {"type": "mcp"}],
            "include": ["message.output_text.logprobs", "code_interpreter_call.outputs"],
            "reasoning": {"summary": "auto"},
            "input": [{"type": "item_reference", "id": "x"},
                      {"role": "user", "content": [{"type": "input_file", "file_id": "f"},
                                                   {"type": "input_image", "file_id": "f"}]}]}
    assert needs(body) == {
        "responses.background", "responses.conversation", "responses.truncation", "responses.tool.web_search",
        "responses.tool.mcp", "responses.logprobs", "responses.include.code_interpreter_call.outputs",
        "responses.reasoning_summary", "responses.item_reference", "responses.input_file", "responses.file_id"}


@pytest.mark.parametrize("body", [None, [], "x", {"tools": "x", "input": 3, "include": {"a": 1}},
                                  {"tools": [None, 3, {"type": 5}], "input": [None, {"content": "x"}],
                                   "tool_choice": {"type": None}, "reasoning": "high"}])
def test_needs_never_raises_whatever_the_body(body: Any) -> None:
    assert needs(body) == frozenset()
