"""Specifications of the stored-response record and of continuing from it with previous_response_id."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.responses.answer import from_completion, new_head
from gateway.responses.items import messages
from gateway.responses.request import read_request
from gateway.responses.stored import TTL_S, StoredResponse, expand, from_bytes, record, ttl_s
from tests.responses.chats import completion

FIRST = read_request(b'{"model": "llama", "input": "Weather in Paris?"}')


def stored_first(team: str = "research") -> StoredResponse:
    response = from_completion(completion(None, [("call_1", "weather", '{"c":"Paris"}')], "tool_calls"),
                               new_head("llama", FIRST.echo))
    return record(response, team, FIRST.input_items)


def test_a_record_survives_the_store_byte_for_byte() -> None:
    saved = stored_first()
    assert from_bytes(saved.to_bytes()) == saved


def test_continuing_sends_stored_input_then_stored_output_then_the_new_input() -> None:
    saved = stored_first()
    new = [{"type": "function_call_output", "call_id": "call_1", "output": "18C"}]
    items = expand(saved, saved.id, "research", new)
    assert items == [*FIRST.input_items, *saved.output_items, *new]
    assert [m["role"] for m in messages(items)] == ["user", "assistant", "tool"]


@pytest.mark.parametrize("team, record_there", [("other-team", True), ("research", False)])
def test_another_teams_or_a_missing_record_is_the_same_404(team: str, record_there: bool) -> None:
    saved = stored_first()
    with pytest.raises(GatewayError) as caught:
        expand(saved if record_there else None, saved.id, team, [])
    assert caught.value.status == 404 and caught.value.param == "previous_response_id"
    assert saved.id in caught.value.message and "research" not in caught.value.message


@pytest.mark.parametrize("raw", [None, b"", b"garbage", b"[]", b'{"v": 0}',
                                 orjson.dumps({"v": 1, "id": "r", "team": "t", "model": "m", "created_at": "x",
                                               "input": [], "output": []}),
                                 orjson.dumps({"v": 1, "id": "r", "team": "t", "model": "m", "created_at": 1,
                                               "input": [3], "output": []})])
def test_what_is_not_a_record_of_this_format_reads_as_absent(raw: bytes | None) -> None:
    assert from_bytes(raw) is None


def test_a_record_lives_thirty_days_from_its_creation() -> None:
    assert TTL_S == 30 * 24 * 3600
    assert ttl_s(1_000, now=1_000) == TTL_S and ttl_s(1_000, now=1_000 + TTL_S + 5) == 0
