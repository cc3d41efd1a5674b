"""Specifications of reading an upstream's usage: billable figures only, the gateway's count otherwise."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.accounting.usage import InvalidUsage, Usage, estimate, output_bytes, usage_from_doc
from providers import PROFILES

DEEPINFRA, OPENAI = PROFILES["deepinfra"], PROFILES["openai"]


def test_usage_with_the_providers_own_cost() -> None:
    doc = {"usage": {"prompt_tokens": 15, "completion_tokens": 16, "estimated_cost": 0.0000268}}
    assert usage_from_doc(doc, DEEPINFRA) == Usage(15, 16, 26_800)
    assert usage_from_doc(doc, OPENAI) == Usage(15, 16, None)  # openai reports no cost field


@pytest.mark.parametrize("doc", [{}, {"usage": None}, [], "text", None, {"choices": []}])
def test_no_usage_is_none(doc: Any) -> None:
    assert usage_from_doc(doc, OPENAI) is None


def test_embeddings_usage_without_completion_tokens_counts_none_generated() -> None:
    assert usage_from_doc({"usage": {"prompt_tokens": 8, "total_tokens": 8}}, OPENAI) == Usage(8, 0, None)


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": "12", "completion_tokens": 3}, {"prompt_tokens": 12, "completion_tokens": "3"},
    {"prompt_tokens": -1, "completion_tokens": 3}, {"prompt_tokens": 12.0, "completion_tokens": 3},
    {"prompt_tokens": True, "completion_tokens": 3}, {"prompt_tokens": 2**53, "completion_tokens": 3},
    {"prompt_tokens": 12, "completion_tokens": None}, {"completion_tokens": 3}, [12, 3], "12",
    {"prompt_tokens": 12, "completion_tokens": 3, "estimated_cost": -0.01},
    {"prompt_tokens": 12, "completion_tokens": 3, "estimated_cost": math.nan},
    {"prompt_tokens": 12, "completion_tokens": 3, "estimated_cost": math.inf},
    {"prompt_tokens": 12, "completion_tokens": 3, "estimated_cost": "0.01"},
    {"prompt_tokens": 12, "completion_tokens": 3, "estimated_cost": 1e300},
])
def test_usage_that_cannot_be_billed_is_refused_naming_the_field(usage: Any) -> None:
    if isinstance(usage, dict) and usage.get("completion_tokens", 0) is None:
        assert usage_from_doc({"usage": usage}, DEEPINFRA) == Usage(12, 0, None)  # null: none generated
        return
    with pytest.raises(InvalidUsage):
        usage_from_doc({"usage": usage}, DEEPINFRA)


def test_the_gateways_own_count_is_four_bytes_a_token_rounded_up() -> None:
    assert estimate(prompt_bound_bytes=18, output_bytes=9) == Usage(5, 3, None)
    assert estimate(0, 0) == Usage(0, 0, None)


def test_output_bytes_counts_texts_and_tool_calls_of_every_choice() -> None:
    doc = {"choices": [{"message": {"content": "héllo", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}},
                       {"text": "abc"}, "garbage", {"message": "also garbage"}]}
    assert output_bytes(doc) > len("héllo".encode()) + 3
    assert output_bytes({"choices": "nope"}) == 0 and output_bytes([]) == 0
