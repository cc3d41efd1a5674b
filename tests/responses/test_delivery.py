"""Specifications of a Responses answer through a real gateway process: stored and continued
(`previous_response_id`), read back and deleted by its own team only, billed once, and a
stream whose upstream breaks ended with `response.failed`, never cut."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseFailedEvent

from tests.fakes import FakeProvider
from tests.faults.upstream import HostileUpstream
from tests.gateway_process import GatewayProcess

KEY, OTHER, ADMIN = "sk-responses-a", "sk-responses-b", "admin-responses"
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("novita", completion_tokens=4) as provider:
        yield provider


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(fake: FakeProvider, hostile: HostileUpstream) -> Iterator[GatewayProcess]:
    config = {"server": {"admin_key": ADMIN}, "routing": {"models_poll_s": 0, "max_attempts": 1},
              "providers": {"novita": {"kind": "novita", "base_url": fake.base_url, "api_key": fake.api_key},
                            "hostile": {"kind": "deepinfra", "base_url": hostile.base_url, "api_key": "k"}},
              "models": {"llama": {"routes": [{"provider": "novita", "model": "meta-llama/llama-3.1-8b-instruct",
                                               "context_window": 8192, "price": PRICE}]},
                         "reset": {"routes": [{"provider": "hostile", "model": "reset", "context_window": 8192,
                                               "price": PRICE}]}},
              "teams": {"a": {"keys": [KEY]}, "b": {"keys": [OTHER]}}}
    with GatewayProcess(config) as gw:
        yield gw


def client(gw: GatewayProcess, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)


def sent_messages(fake: FakeProvider) -> list[dict[str, Any]]:
    """The last chat request's messages, each content as its text (a string, or text parts joined)."""
    messages = [r.json for r in fake.requests if r.method == "POST"][-1]["messages"]
    return [{**m, "content": m["content"] if isinstance(m["content"], str)
             else "".join(part["text"] for part in m["content"])} for m in messages]


def test_a_continued_response_sends_the_whole_conversation_to_the_provider(
        gateway: GatewayProcess, fake: FakeProvider) -> None:
    first = client(gateway).responses.create(model="llama", input="Name a colour.", instructions="Be brief.")
    second = client(gateway).responses.create(model="llama", input="And another?", previous_response_id=first.id,
                                              instructions="Be briefer.")
    assert second.status == "completed" and second.id != first.id
    assert sent_messages(fake) == [
        {"role": "system", "content": "Be briefer."},  # the new instructions, not the stored ones
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And another?"},
    ]
    third = client(gateway).responses.create(model="llama", input="One more.", previous_response_id=second.id,
                                             stream=True)
    final = list(third)[-1].response
    assert [m["content"] for m in sent_messages(fake) if m["role"] == "assistant"] == [
        first.output_text, second.output_text]
    # Stored before its last event went out: continuing it at once finds it.
    fourth = client(gateway).responses.create(model="llama", input="Done.", previous_response_id=final.id)
    assert fourth.status == "completed"


def test_a_stored_response_is_read_and_deleted_by_its_team_only(gateway: GatewayProcess) -> None:
    made = client(gateway).responses.create(model="llama", input="Hello.")
    read = client(gateway).responses.retrieve(made.id)
    assert Response.model_validate(read.model_dump()).output_text == made.output_text
    for attempt in (lambda: client(gateway, OTHER).responses.retrieve(made.id),
                    lambda: client(gateway, OTHER).responses.delete(made.id),
                    lambda: client(gateway, OTHER).responses.create(model="llama", input="x",
                                                                    previous_response_id=made.id)):
        with pytest.raises(openai.NotFoundError):
            attempt()  # another team's id is the same 404 as no id at all
    client(gateway).responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client(gateway).responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).responses.create(model="llama", input="x", previous_response_id=made.id)
    assert caught.value.code == "previous_response_not_found"


def test_store_false_keeps_nothing(gateway: GatewayProcess) -> None:
    made = client(gateway).responses.create(model="llama", input="Hello.", store=False)
    with pytest.raises(openai.NotFoundError):
        client(gateway).responses.retrieve(made.id)


def test_each_response_is_billed_once_under_the_responses_endpoint(gateway: GatewayProcess) -> None:
    whole = client(gateway).responses.with_raw_response.create(model="llama", input="Count.")
    streamed = list(client(gateway).responses.create(model="llama", input="Count.", stream=True))
    ids = {whole.headers["x-request-id"]}
    records = httpx.get(gateway.url + "/admin/requests", params={"team": "a", "limit": 1000},
                        headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]
    [record] = [r for r in records if r["request_id"] in ids]
    usage = whole.parse().usage
    assert record["endpoint"] == "responses" and record["status"] == 200
    assert (record["prompt_tokens"], record["completion_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert record["cost_nano"] == usage.input_tokens * 1000 + usage.output_tokens * 2000
    assert streamed[-1].response.usage.output_tokens == 4


def test_an_upstream_that_breaks_mid_stream_ends_the_events_with_response_failed(gateway: GatewayProcess) -> None:
    events = list(client(gateway).responses.create(model="reset", input="Talk.", stream=True))
    assert events[0].type == "response.created" and "response.output_text.delta" in {e.type for e in events}
    failed = ResponseFailedEvent.model_validate(events[-1].model_dump())
    assert failed.response.status == "failed" and failed.response.error.code == "server_error"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_a_built_in_tool_on_a_model_without_a_native_route_is_a_400_naming_it(gateway: GatewayProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).responses.create(model="llama", input="News?", tools=[{"type": "web_search"}])
    assert caught.value.param == "tools[0].type"


def test_a_conversation_cannot_grow_past_four_request_bodies(fake: FakeProvider) -> None:
    config = {"server": {"max_body_bytes": 16384}, "routing": {"models_poll_s": 0},
              "providers": {"novita": {"kind": "novita", "base_url": fake.base_url, "api_key": fake.api_key}},
              "models": {"llama": {"routes": [{"provider": "novita", "model": "meta-llama/llama-3.1-8b-instruct",
                                               "price": PRICE}]}},
              "teams": {"a": {"keys": [KEY]}}}
    with GatewayProcess(config) as gw:
        previous, turns = None, 0
        with pytest.raises(openai.BadRequestError) as caught:
            while turns < 10:  # 12 KB a turn: the fifth can no longer be continued
                previous = client(gw).responses.create(model="llama", input="x " * 6000,
                                                       previous_response_id=previous).id
                turns += 1
    assert caught.value.code == "conversation_too_long" and caught.value.param == "previous_response_id"
    assert 3 <= turns <= 5
