"""The OpenAI Agents SDK through the gateway, pointed at it with a base URL and a team key only:
an agent with a function tool, on a chat-only provider (the gateway translates) and on a real
vLLM (the gateway passes the Responses API through), streamed and not, its spend recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

KEY = "sk-agents-team"
ADMIN = "admin-agents"
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}  # 1,000 and 2,000 nano-dollars a token

# Agents send their traces to OpenAI with the client's key unless told not to: never from a test.
set_tracing_disabled(True)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("deepinfra", completion_tokens=5) as provider:
        yield provider


@pytest.fixture(scope="module")
def gateway(fake: FakeProvider) -> Iterator[GatewayProcess]:
    config = {"server": {"admin_key": ADMIN}, "routing": {"models_poll_s": 0},
              "providers": {"deepinfra": {"kind": "deepinfra", "base_url": fake.base_url, "api_key": fake.api_key}},
              "models": {"llama": {"routes": [{"provider": "deepinfra", "model": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                                               "context_window": 8192, "price": PRICE}]}},
              "teams": {"agents": {"keys": [KEY]}}}
    with GatewayProcess(config) as gw:
        yield gw


def weather_agent(base_url: str, calls: list[str]) -> Agent:
    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return "18C and sunny"

    client = AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    return Agent(name="forecaster", instructions="Answer with the weather tool.", tools=[weather],
                 model=OpenAIResponsesModel(model="llama", openai_client=client))


def records(gw: GatewayProcess) -> list[dict[str, Any]]:
    answer = httpx.get(gw.url + "/admin/requests", params={"team": "agents", "limit": 100},
                       headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    return answer.json()["data"]


@pytest.mark.parametrize("streamed", [False, True])
def test_an_agent_calls_its_tool_and_answers_through_a_translated_route(
        gateway: GatewayProcess, fake: FakeProvider, streamed: bool) -> None:
    calls: list[str] = []
    agent = weather_agent(gateway.base_url, calls)
    before = len(records(gateway))

    async def run() -> str:
        if not streamed:
            return (await Runner.run(agent, "What is the weather in Paris?")).final_output
        result = Runner.run_streamed(agent, "What is the weather in Paris?")
        async for _ in result.stream_events():
            pass
        return result.final_output

    final = asyncio.run(run())
    assert calls and isinstance(final, str) and final  # the tool ran, then the model answered
    sent = [r.json for r in fake.requests if r.method == "POST"][-1]["messages"]
    assert sent[-1]["role"] == "tool" and sent[-1]["content"] == "18C and sunny"  # the result went back
    made = records(gateway)[: len(records(gateway)) - before]
    assert len(made) == 2 and {r["endpoint"] for r in made} == {"responses"}
    for record in made:  # billed as chat is: DeepInfra's own figure, the price table's beside it
        assert record["status"] == 200 and record["provider"] == "deepinfra"
        assert record["cost_nano"] == record["provider_cost_nano"] > 0
        assert record["table_cost_nano"] == record["prompt_tokens"] * 1000 + record["completion_tokens"] * 2000
