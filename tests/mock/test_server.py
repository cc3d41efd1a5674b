"""Specifications of the mock as an upstream: its HTTP, its latency, and the gateway's real path through it
(routing, fallback on its errors, settlement at the route's price)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.config.mock import MockConfig
from gateway.mock import MockServer
from gateway.service import Gateway
from gateway.store.memory import MemoryStore
from tests.waiting import eventually

KEY = "sk-mock-tests"
HELLO = [{"role": "user", "content": "hello there"}]  # 11 bytes: 3 tokens


async def started(**settings: Any) -> MockServer:
    server = MockServer(MockConfig.model_validate(settings))
    await server.start()
    return server


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    server = await started()
    yield server
    await server.stop()


async def test_a_stream_is_chunked_server_sent_events_ending_in_done(mock: MockServer) -> None:
    body = {"model": "m", "messages": HELLO, "stream": True, "max_tokens": 2, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=mock.base_url) as client, \
            client.stream("POST", "/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/event-stream"
        assert answer.headers["transfer-encoding"] == "chunked"
        raw = b"".join([chunk async for chunk in answer.aiter_raw()])
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    assert all(event.startswith(b"data: {") for event in events[:-2])
    assert len(events[:-2]) == 1 + 2 + 1 + 1  # role, two tokens, finish, usage


async def test_the_openai_sdk_reads_every_endpoint_on_one_kept_alive_connection(mock: MockServer) -> None:
    sdk = openai.AsyncOpenAI(base_url=mock.base_url, api_key="unused", max_retries=0)
    answer = await sdk.chat.completions.create(model="m", messages=HELLO, max_tokens=4)
    assert answer.choices[0].message.content == "This is the mock" and answer.usage.prompt_tokens == 3
    stream = await sdk.chat.completions.create(model="m", messages=HELLO, stream=True,
                                               stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("This is the mock")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    assert (await sdk.completions.create(model="m", prompt="hi")).choices[0].text.startswith("This")
    assert len((await sdk.embeddings.create(model="e", input="hi", dimensions=3)).data[0].embedding) == 3
    assert len(mock.connections) == 1
    await sdk.close()


async def test_an_error_reads_as_openais_to_the_sdk() -> None:
    server = await started(error_rate=1, error_statuses=[503])
    sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk.chat.completions.create(model="m", messages=HELLO)
    assert caught.value.status_code == 503 and "overloaded on purpose" in caught.value.message
    await sdk.close()
    await server.stop()


async def test_latency_to_the_first_token_and_per_token_is_what_config_says() -> None:
    server = await started(latency={"first_token_s": 0.2, "per_token_s": 0.03}, answer_tokens=6)
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        began = time.monotonic()
        async with client.stream("POST", "/chat/completions",
                                 json={"model": "m", "messages": HELLO, "stream": True}) as answer:
            arrivals = [time.monotonic() - began async for line in answer.aiter_lines() if '"content":"' in line]
        assert len(arrivals) == 7  # the role's empty content, then six tokens
        assert 0.2 <= arrivals[1] < 0.2 + 0.15
        assert 0.2 + 5 * 0.03 <= arrivals[-1] < 0.2 + 5 * 0.03 + 0.15
        began = time.monotonic()
        whole = await client.post("/chat/completions", json={"model": "m", "messages": HELLO})
        took = time.monotonic() - began
        assert whole.status_code == 200 and 0.2 + 6 * 0.03 <= took < 0.2 + 6 * 0.03 + 0.15
    await server.stop()


async def test_a_client_leaving_a_slow_stream_cancels_its_writer() -> None:
    server = await started(latency={"per_token_s": 0.05}, answer_tokens=1000)
    async with httpx.AsyncClient(base_url=server.base_url) as client, \
            client.stream("POST", "/chat/completions", json={"model": "m", "messages": HELLO, "stream": True}) as answer:
        async for _ in answer.aiter_raw():
            break
    await eventually(lambda: not server.connections, what="the mock to drop the connection")
    await server.stop()


# --- through the gateway: a real route ---------------------------------------------------------

def gateway_config(first: dict[str, Any]) -> Any:
    return parse_config({
        "providers": {"flaky": {"kind": "mock", **first}, "steady": {"kind": "mock"}},
        "models": {"m": {"strategy": "ordered", "routes": [
            {"provider": "flaky", "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
            {"provider": "steady", "price": {"input_per_mtok": 1000, "output_per_mtok": 2000}}]}},
        "teams": {"t": {"keys": [KEY], "budget_usd": {"day": 10}}}}, {})


@pytest.fixture
async def through() -> AsyncIterator[Any]:
    async def run(first: dict[str, Any]) -> Any:
        config = gateway_config(first)
        store = MemoryStore()
        gateway = Gateway(config, store)
        await gateway.start()
        opened.append(gateway)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(config, gateway)),
                                   base_url="http://gateway", headers={"authorization": f"Bearer {KEY}"})
        clients.append(client)
        return client, store
    opened: list[Gateway] = []
    clients: list[httpx.AsyncClient] = []
    yield run
    for client in clients:
        await client.aclose()
    for gateway in opened:
        await gateway.stop()


async def test_the_gateway_settles_a_mock_answer_at_the_routes_price(through: Any) -> None:
    client, store = await through({})
    answer = await client.post("/v1/chat/completions", json={"model": "m", "messages": HELLO, "max_tokens": 5})
    assert answer.status_code == 200 and answer.headers["x-gateway-provider"] == "flaky"
    [record] = await store.records("t")
    assert (record.provider, record.prompt_tokens, record.completion_tokens) == ("flaky", 3, 5)
    assert record.cost_nano == 3 * 1000 + 5 * 2000  # nano-dollars at 1 and 2 USD per million tokens


async def test_a_mock_failing_every_request_is_fallen_back_from(through: Any) -> None:
    client, store = await through({"error_rate": 1.0, "error_statuses": [500]})
    answer = await client.post("/v1/chat/completions", json={"model": "m", "messages": HELLO, "stream": True})
    assert answer.status_code == 200
    assert answer.headers["x-gateway-provider"] == "steady" and answer.headers["x-gateway-attempts"] == "2"
    assert answer.text.endswith("data: [DONE]\n\n")
    [record] = await store.records("t")
    assert record.provider == "steady" and record.completion_tokens == 16


async def test_when_every_route_fails_the_client_gets_the_upstreams_error(through: Any) -> None:
    client, store = await through({"error_rate": 1.0, "error_statuses": [429]})
    # Only the failing route: the request names it.
    answer = await client.post("/v1/chat/completions", json={"model": "m", "messages": HELLO},
                               headers={"x-gateway-route": "flaky"})
    assert answer.status_code == 429 and "error" in answer.json()
    [record] = await store.records("t")
    assert record.status == 429 and record.cost_nano == 0
