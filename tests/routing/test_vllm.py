"""Against the real thing: a pool of two real vLLM servers (CPU build, tiny model) behind the gateway,
with a per-token provider (a fake) to spill to."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any, Literal

import httpx
import openai
import orjson
import pydantic
import pytest

from gateway.call import read_call
from tests.fakes import FakeProvider
from tests.routing.support import ADMIN_KEY, gateway, posts, price, provider_entry, route_doc
from tests.routing.vllm_servers import VllmServer, VllmServers
from tests.waiting import wait_until

pytestmark = pytest.mark.vllm

MESSAGES = [{"role": "user", "content": "Hello! How are you today?"}]
LONG = {"ignore_eos": True}  # vLLM generates max_tokens whatever the model says


@pytest.fixture
def paid() -> Any:
    fake = FakeProvider("openai", models=["tiny"]).start()
    yield fake
    fake.stop()


def pool_gateway(servers: VllmServers, paid: FakeProvider, members: int = 2, **pool: Any) -> Any:
    urls = [server.base_url for server in servers.ensure()[:members]]
    providers = {"pool": {"kind": "vllm", "endpoints": urls, **pool}, "paid": provider_entry(paid)}
    models = {"tiny": {"routes": [{"provider": "pool", "model": "tiny"},
                                  {"provider": "paid", "model": "tiny", "price": price(0.2, 0.6)}]}}
    return gateway(providers, models, metrics_poll_s=0.25)


def sdk(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="open", max_retries=0, timeout=60)


def test_chat_and_completions_through_the_gateway(vllm_servers: VllmServers, paid: FakeProvider) -> None:
    with pool_gateway(vllm_servers, paid) as gw:
        chat = sdk(gw).chat.completions.with_raw_response.create(model="tiny", messages=MESSAGES, max_tokens=8,
                                                                 extra_body=LONG)
        done = chat.parse()
        assert chat.headers["x-gateway-provider"] == "pool" and chat.headers["x-gateway-attempts"] == "1"
        assert isinstance(done.choices[0].message.content, str) and done.usage.completion_tokens == 8
        text = sdk(gw).completions.with_raw_response.create(model="tiny", prompt="The gateway routes", max_tokens=5,
                                                            extra_body=LONG)
        assert text.headers["x-gateway-provider"] == "pool"
        assert text.parse().usage.completion_tokens == 5 and text.parse().choices[0].finish_reason == "length"
    assert posts(paid) == 0


def test_streaming_with_usage(vllm_servers: VllmServers, paid: FakeProvider) -> None:
    with pool_gateway(vllm_servers, paid) as gw:
        raw = sdk(gw).chat.completions.with_raw_response.create(
            model="tiny", messages=MESSAGES, max_tokens=12, stream=True, stream_options={"include_usage": True},
            extra_body=LONG)
        assert raw.headers["x-gateway-provider"] == "pool"
        chunks = list(raw.parse())  # the SDK closes its connection at [DONE], before vLLM's end of body
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
        assert all(c.usage is None for c in chunks[:-1])
        plain = list(sdk(gw).completions.create(model="tiny", prompt="Numbers like", max_tokens=6, stream=True,
                                                extra_body=LONG))
        assert all(c.choices for c in plain)  # no usage chunk for a client that did not ask for one
        # A stream's timings are recorded when the gateway settles it, just after its last byte.
        wait_until(lambda: route_doc(gw, "tiny", "pool")["tpot_s"] is not None, 5, "the stream's timings recorded")
        doc = route_doc(gw, "tiny", "pool")
        assert doc["ttft_s"] > 0 and doc["tpot_s"] > 0


def _load_directly(url: str, n: int, max_tokens: int, log: list[str]) -> list[threading.Thread]:
    """n long requests straight to a server, behind the gateway's back; how each went goes to `log`.

    Not streamed: on a two-core machine a server streaming thousands of events answers
    /metrics too slowly for a test to watch its queue.
    """
    client = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=n))  # one client: cheap to start

    def one() -> None:
        body = {"model": "tiny", "prompt": "The gateway", "max_tokens": max_tokens, **LONG}
        started = time.monotonic()
        try:
            response = client.post(url + "/completions", json=body)
            log.append(f"{response.status_code} after {time.monotonic() - started:.1f} s: "
                       f"{response.text[:300] if response.status_code != 200 else response.json()['usage']}")
        except httpx.HTTPError as exc:
            log.append(f"{type(exc).__name__} after {time.monotonic() - started:.1f} s: {exc}")
    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads


def test_scraped_queue_saturates_the_pool_and_traffic_spills_to_the_per_token_provider(
        vllm_servers: VllmServers, paid: FakeProvider) -> None:
    server = vllm_servers.ensure()[0]
    with pool_gateway(vllm_servers, paid, members=1, max_waiting=1) as gw:
        client = sdk(gw)
        assert client.chat.completions.with_raw_response.create(
            model="tiny", messages=MESSAGES, max_tokens=4).headers["x-gateway-provider"] == "pool"
        log: list[str] = []
        # 2 running (--max-num-seqs 2) and 14 waiting: the queue lasts 30-45 s. Should the busy
        # server's /metrics answer late, the gateway takes it for what it is: no room.
        threads = _load_directly(server.base_url, 16, 1000, log)
        full: list[dict[str, Any]] = []  # the member as /admin/routes showed it without room
        served: list[tuple[str, str]] = []
        # Whenever the gateway shows the pool full, a request through it; until one spills.
        while any(thread.is_alive() for thread in threads) and ("paid", "1") not in served:
            member = route_doc(gw, "tiny", "pool")["endpoints"][0]
            if member["room"] is False:
                full.append(member)
                raw = client.chat.completions.with_raw_response.create(model="tiny", messages=MESSAGES,
                                                                       max_tokens=4)
                served.append((raw.headers["x-gateway-provider"], raw.headers["x-gateway-attempts"]))
            time.sleep(0.1)
        for thread in threads:
            thread.join(300)
        # Served by the paid route at the first attempt: the router ranked the pool behind it,
        # which with 64 in-flight allowed only the scrape (a queue, or no answer in time) could do.
        assert ("paid", "1") in served, (served, full, log)
        assert all(m["busy"] or m["waiting"] >= 1 for m in full), full
        wait_until(lambda: route_doc(gw, "tiny", "pool")["why"] == "pool with room", 60, "the queue drains")
        back = client.chat.completions.with_raw_response.create(model="tiny", messages=MESSAGES, max_tokens=4)
        assert back.headers["x-gateway-provider"] == "pool"


async def test_a_burst_above_the_pools_capacity_spills_the_excess(vllm_servers: VllmServers,
                                                                  paid: FakeProvider) -> None:
    with pool_gateway(vllm_servers, paid, max_inflight=2) as gw:
        async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="open", max_retries=0, timeout=120) as client:
            async def one() -> tuple[str, str]:
                raw = await client.chat.completions.with_raw_response.create(
                    model="tiny", messages=MESSAGES, max_tokens=400, extra_body=LONG)
                assert raw.parse().usage.completion_tokens in (8, 400)  # the fake answers 8 tokens
                return raw.headers["x-gateway-provider"], raw.headers["x-gateway-attempts"]
            answers = await asyncio.gather(*(one() for _ in range(10)))
    # Two members with two slots each; the rest spilled, each at its first attempt.
    assert Counter(answers) == {("pool", "1"): 4, ("paid", "1"): 6}, answers


def test_a_killed_vllm_server_is_taken_out_of_the_pool_without_a_client_error(
        vllm_servers: VllmServers, paid: FakeProvider) -> None:
    servers = vllm_servers.ensure()  # a later test that needs it back restarts it the same way
    with pool_gateway(vllm_servers, paid) as gw:
        client = sdk(gw)
        served: list[str] = []
        errors: list[Exception] = []
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                try:
                    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=MESSAGES,
                                                                           max_tokens=16, extra_body=LONG)
                    served.append(raw.headers["x-gateway-provider"])
                except openai.APIError as error:
                    errors.append(error)

        workers = [threading.Thread(target=traffic) for _ in range(3)]
        for worker in workers:
            worker.start()
        wait_until(lambda: len(served) >= 6, 60, "traffic through the pool")
        servers[1].kill()
        killed_at = len(served)
        wait_until(lambda: not route_doc(gw, "tiny", "pool")["endpoints"][1]["healthy"], 10,
                  "the killed server is marked down")
        wait_until(lambda: len(served) >= killed_at + 8, 60, "traffic after the kill")
        stop.set()
        for worker in workers:
            worker.join(60)
        after = Counter(served[killed_at:])
        doc = route_doc(gw, "tiny", "pool")
    assert errors == []
    assert len(served) > killed_at + 5 and after["pool"] >= after["paid"]  # the pool kept serving
    assert [m["healthy"] for m in doc["endpoints"]] == [True, False]
    assert doc["available"] and doc["endpoints"][0]["usable"] and not doc["endpoints"][1]["usable"]


PROMPT_SHAPES = {
    "one short message": [{"role": "user", "content": "Hi"}],
    "a conversation": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there"},
                       {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "And now?"}],
    "developer and names": [{"role": "developer", "content": "Be brief.", "name": "ops"},
                            {"role": "user", "content": "Go", "name": "alice"}],
    "text parts": [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                                {"type": "text", "text": "the gateway, please."}]}],
    "multi-byte text": [{"role": "user", "content": "Grüße aus Köln — 你好，世界 — 🚀🚀🚀 ÿ"}],
    "tool call and result": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21C"}],
    "long repeated text": [{"role": "user", "content": "the gateway routes requests " * 60}],
    "empty content": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""},
                      {"role": "user", "content": "?"}],
}


@pytest.mark.parametrize("shape", sorted(PROMPT_SHAPES))
def test_the_prompt_bound_is_never_below_what_a_real_vllm_counts(vllm_servers: VllmServers, shape: str) -> None:
    server = vllm_servers.ensure()[0]
    messages = PROMPT_SHAPES[shape]
    body = {"model": "tiny", "messages": messages, "max_tokens": 1}
    answer = httpx.post(server.base_url + "/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    counted = answer.json()["usage"]["prompt_tokens"]
    bound = read_call(orjson.dumps(body), "chat").prompt_tokens_bound
    assert bound >= counted, f"{shape}: the bound {bound} is below vLLM's count {counted}"


# Structured output and tool calls. The tiny model's answers are noise; under guided decoding
# their shape is not: these check the shape only. The servers keep vLLM's defaults, whose
# guided JSON lets the model put free whitespace between tokens (only the server-wide
# --structured-outputs-config disable_any_whitespace stops that), hence a generous
# max_tokens: in 300 samples of each, a verdict took at most 107 tokens, a weather call 181.
ROOM = 512

VERDICT_SCHEMA = {"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"],
                  "additionalProperties": False}


class Verdict(pydantic.BaseModel):
    """What VERDICT_SCHEMA describes, for checking an answer and for the SDK's `parse`."""

    model_config = pydantic.ConfigDict(extra="forbid")
    answer: bool


WEATHER_PARAMETERS = {"type": "object",
                      "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo"]},
                                     "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                      "required": ["city", "unit"], "additionalProperties": False}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                                 "parameters": WEATHER_PARAMETERS, "strict": True}}
CALL_WEATHER = {"type": "function", "function": {"name": "get_weather"}}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather like in Paris?"}]


class WeatherArguments(pydantic.BaseModel):
    """What WEATHER_PARAMETERS describes."""

    model_config = pydantic.ConfigDict(extra="forbid")
    city: Literal["Paris", "Tokyo"]
    unit: Literal["celsius", "fahrenheit"]


def test_a_json_schema_response_format_gives_json_that_matches_the_schema(vllm_servers: VllmServers,
                                                                          paid: FakeProvider) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA,
                                                               "strict": True}}
    with pool_gateway(vllm_servers, paid) as gw:
        raw = sdk(gw).chat.completions.with_raw_response.create(model="tiny", messages=MESSAGES, max_tokens=ROOM,
                                                                response_format=response_format)
    choice = raw.parse().choices[0]
    assert raw.status_code == 200 and raw.headers["x-gateway-provider"] == "pool"
    assert choice.finish_reason == "stop", choice
    Verdict.model_validate_json(choice.message.content)
    assert posts(paid) == 0


def test_the_sdks_parse_helper_gets_its_pydantic_object_back(vllm_servers: VllmServers, paid: FakeProvider) -> None:
    with pool_gateway(vllm_servers, paid) as gw:
        done = sdk(gw).chat.completions.parse(model="tiny", messages=MESSAGES, max_tokens=ROOM,
                                              response_format=Verdict)
    assert isinstance(done.choices[0].message.parsed, Verdict), done
    assert posts(paid) == 0


def tool_gateway(server: VllmServer) -> Any:
    """A gateway whose one route for "tiny" is the vLLM server with a tool parser."""
    return gateway({"tools": {"kind": "vllm", "endpoints": [server.base_url]}},
                   {"tiny": {"routes": [{"provider": "tools", "model": "tiny"}]}})


def test_a_named_tool_choice_gives_a_call_of_that_tool_with_arguments_that_match_its_schema(
        vllm_tool_server: VllmServer) -> None:
    with tool_gateway(vllm_tool_server) as gw:
        raw = sdk(gw).chat.completions.with_raw_response.create(
            model="tiny", messages=WEATHER_QUESTION, max_tokens=ROOM, tools=[WEATHER_TOOL], tool_choice=CALL_WEATHER)
    choice = raw.parse().choices[0]
    assert raw.status_code == 200 and raw.headers["x-gateway-provider"] == "tools"
    assert choice.finish_reason == "stop", choice  # as OpenAI answers a named tool_choice
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id and call.function.name == "get_weather"
    WeatherArguments.model_validate_json(call.function.arguments)


def test_a_required_tool_choice_without_parallel_calls_gives_exactly_one_call(vllm_tool_server: VllmServer) -> None:
    # vLLM guides a "required" answer as a list of {name, parameters}: more room to take than
    # one call's arguments (at most 397 tokens in 160 samples). Without parallel_tool_calls
    # false the list has no end but max_tokens: 2 answers in 20 ran into it.
    with tool_gateway(vllm_tool_server) as gw:
        done = sdk(gw).chat.completions.create(model="tiny", messages=WEATHER_QUESTION, max_tokens=900,
                                               tools=[WEATHER_TOOL], tool_choice="required",
                                               parallel_tool_calls=False)
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    WeatherArguments.model_validate_json(call.function.arguments)


def test_a_streamed_tool_call_reassembles_into_one_call_with_arguments_that_match_its_schema(
        vllm_tool_server: VllmServer) -> None:
    with tool_gateway(vllm_tool_server) as gw, sdk(gw).chat.completions.stream(
            model="tiny", messages=WEATHER_QUESTION, max_tokens=ROOM, tools=[WEATHER_TOOL],
            tool_choice=CALL_WEATHER) as stream:
        deltas = [event for event in stream if event.type == "tool_calls.function.arguments.delta"]
        done = stream.get_final_completion()
    assert done.choices[0].finish_reason == "stop", done
    [call] = done.choices[0].message.tool_calls
    assert len(deltas) > 1, deltas  # streamed as it was generated, not in one piece
    assert call.function.name == "get_weather" and call.function.arguments == "".join(d.arguments_delta
                                                                                      for d in deltas)
    assert isinstance(call.function.parsed_arguments, dict)  # the SDK parses a strict tool's arguments
    WeatherArguments.model_validate_json(call.function.arguments)


def test_a_responses_call_passes_through_to_vllm_natively_and_its_usage_is_billed(
        vllm_servers: VllmServers, paid: FakeProvider) -> None:
    from openai.types.responses import Response, ResponseCompletedEvent

    with pool_gateway(vllm_servers, paid) as gw:
        raw = sdk(gw).responses.with_raw_response.create(model="tiny", input="Hello! How are you?",
                                                         max_output_tokens=8)
        assert raw.headers["x-gateway-provider"] == "pool"
        whole = Response.model_validate(raw.http_response.json())  # vLLM's own object, unchanged
        assert whole.usage is not None and whole.usage.output_tokens > 0
        events = list(sdk(gw).responses.create(model="tiny", input="Hello! How are you?", max_output_tokens=8,
                                               stream=True))
        assert events[0].type == "response.created"
        final = events[-1]
        assert final.type in ("response.completed", "response.incomplete")
        if final.type == "response.completed":
            ResponseCompletedEvent.model_validate(final.model_dump())
        assert final.response.usage is not None and final.response.usage.output_tokens > 0
        answer = httpx.get(gw.url + "/admin/requests", params={"team": "default"},
                           headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
        made = [r for r in answer.json()["data"] if r["endpoint"] == "responses"]
    assert posts(paid) == 0
    billed = sorted((r["prompt_tokens"], r["completion_tokens"]) for r in made)
    usage = sorted((u.input_tokens, u.output_tokens) for u in (whole.usage, final.response.usage))
    assert billed == usage  # what vLLM counted, both times


def test_an_agent_runs_unchanged_on_vllm_through_the_native_responses_api(vllm_tool_server: VllmServer) -> None:
    """The Agents SDK with only a base URL and a key: its tool called through vLLM's own Responses API."""
    from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # an agent's traces go to OpenAI with the client's key unless turned off
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"18C and sunny in {city}"

    with tool_gateway(vllm_tool_server) as gw:
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key="open", max_retries=0, timeout=120)
        agent = Agent(name="forecaster", instructions="Use the weather tool.", tools=[get_weather],
                      model=OpenAIResponsesModel(model="tiny", openai_client=client),
                      model_settings=ModelSettings(tool_choice="get_weather", max_tokens=ROOM),
                      tool_use_behavior="stop_on_first_tool")  # a forced call each turn would never end
        result = asyncio.run(Runner.run(agent, "What is the weather like in Paris?"))
        answer = httpx.get(gw.url + "/admin/requests", params={"team": "default"},
                           headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert len(asked) == 1 and result.final_output == f"18C and sunny in {asked[0]}"
    [record] = [r for r in answer.json()["data"] if r["endpoint"] == "responses"]
    assert record["provider"] == "tools" and record["status"] == 200
    usage = result.raw_responses[0].usage
    assert (record["prompt_tokens"], record["completion_tokens"]) == (usage.input_tokens, usage.output_tokens)
