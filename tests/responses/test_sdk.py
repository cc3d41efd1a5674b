"""The openai SDK against the gateway's translation: create, stream and parse, as an app would call them.

A real gateway process sends each request to a fake chat-only provider (`deepinfra` or
`novita`) and translates the answer back. The SDK's stream accumulator is strict (item
identities, content before its item, the final response's items), so these prove the event
sequence is one it accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import openai
import pytest
from pydantic import BaseModel

from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

UPSTREAMS = {"deepinfra": "meta-llama/Meta-Llama-3.1-8B-Instruct", "novita": "meta-llama/llama-3.1-8b-instruct"}
KEY = "sk-responses-team"
WEATHER = {"type": "function", "name": "weather", "description": "Weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}


class City(BaseModel):
    name: str
    population: int


@contextmanager
def gateway_to(fake: FakeProvider, kind: str) -> Iterator[str]:
    """A gateway whose model `llama` is served by `fake` as a provider of `kind`; its base URL."""
    config = {"providers": {kind: {"kind": kind, "base_url": fake.base_url, "api_key": fake.api_key}},
              "models": {"llama": {"routes": [{"provider": kind, "model": UPSTREAMS[kind], "context_window": 8192,
                                               "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
              "teams": {"team": {"keys": [KEY]}}, "routing": {"models_poll_s": 0}}
    with GatewayProcess(config) as gw:
        yield gw.base_url


@pytest.fixture(params=sorted(UPSTREAMS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[openai.OpenAI, FakeProvider]]:
    """An SDK client whose requests the gateway translates to a fake `deepinfra` or `novita` provider."""
    with FakeProvider(request.param, completion_tokens=6) as fake, gateway_to(fake, request.param) as base_url:
        yield openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0), fake


def test_create_answers_text_with_usage(served: tuple[openai.OpenAI, FakeProvider]) -> None:
    client, fake = served
    response = client.responses.create(model="llama", input="Say hello.", instructions="Be brief.")
    assert response.status == "completed" and response.output_text and response.model == "llama"
    assert response.usage is not None and response.usage.output_tokens == 6
    sent = fake.requests[-1].json["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."} and sent[1]["role"] == "user"


def test_a_raw_stream_is_the_event_sequence_of_the_api(served: tuple[openai.OpenAI, FakeProvider]) -> None:
    client, _fake = served
    events = list(client.responses.create(model="llama", input="Say hello.", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[-1].response.usage is not None and events[-1].response.usage.output_tokens == 6


def test_the_stream_helper_accumulates_a_tool_call_and_its_parsed_arguments(
        served: tuple[openai.OpenAI, FakeProvider]) -> None:
    client, _fake = served
    with client.responses.stream(model="llama", input="Weather in Paris?", tools=[WEATHER]) as stream:
        deltas = [event.delta for event in stream if event.type == "response.function_call_arguments.delta"]
        response = stream.get_final_response()
    [call] = [item for item in response.output if item.type == "function_call"]
    assert call.name == "weather" and "".join(deltas) == call.arguments
    assert isinstance(call.parsed_arguments, dict) and isinstance(call.parsed_arguments["city"], str)


def test_a_tool_result_sent_back_as_items_reaches_the_provider_as_chat_history(
        served: tuple[openai.OpenAI, FakeProvider]) -> None:
    client, fake = served
    first = client.responses.create(model="llama", input="Weather in Paris?", tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    history = [{"role": "user", "content": "Weather in Paris?"}, *[item.model_dump() for item in first.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}]
    second = client.responses.create(model="llama", input=history, tools=[WEATHER], tool_choice="none")
    assert second.output_text and second.status == "completed"
    sent = fake.requests[-1].json["messages"]
    assert sent[-2]["role"] == "assistant" and sent[-2]["tool_calls"][0]["id"] == call.call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C and sunny"}


def test_parse_gives_the_structured_answer_whole_and_streamed() -> None:
    with FakeProvider("novita") as fake, gateway_to(fake, "novita") as base_url:
        client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        whole = client.responses.parse(model="llama", input="A city?", text_format=City)
        with client.responses.stream(model="llama", input="A city?", text_format=City) as stream:
            streamed = stream.get_final_response()
    assert isinstance(whole.output_parsed, City) and isinstance(streamed.output_parsed, City)
    assert fake.requests[-1].json["response_format"]["type"] == "json_schema"


def test_a_refusal_reaches_the_sdk_as_a_bad_request_naming_the_parameter(
        served: tuple[openai.OpenAI, FakeProvider]) -> None:
    client, fake = served
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="llama", input="News?", tools=[{"type": "web_search"}])
    assert caught.value.param == "tools[0].type" and not fake.requests
