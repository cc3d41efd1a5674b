"""End to end: a gateway process routing the official OpenAI SDK's requests over loopback fakes
of different price, speed and failure rate."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import httpx
import openai
import pytest

from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess
from tests.routing.support import gateway, posts, price, provider_entry, route_doc, route_table
from tests.waiting import wait_until

MESSAGES = [{"role": "user", "content": "hello there"}]
COOLDOWN_S = 2.0  # long enough for a few requests even on a loaded two-core machine


def client(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="open", max_retries=0, timeout=10)


def ask(gw: Any, model: str = "m", stream: bool = False, max_tokens: int = 4, **extra: Any) -> tuple[str, int]:
    """(provider that served, attempts it took) for one chat request through the SDK; raises on error."""
    if stream:
        with client(gw).chat.completions.with_streaming_response.create(
                model=model, messages=MESSAGES, max_tokens=max_tokens, stream=True,
                stream_options={"include_usage": True}, **extra) as response:
            chunks = list(response.parse())
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
            return response.headers["x-gateway-provider"], int(response.headers["x-gateway-attempts"])
    raw = client(gw).chat.completions.with_raw_response.create(model=model, messages=MESSAGES,
                                                                max_tokens=max_tokens, **extra)
    assert raw.parse().choices[0].message.content
    return raw.headers["x-gateway-provider"], int(raw.headers["x-gateway-attempts"])


async def burst(gw: Any, n: int, model: str = "m") -> list[tuple[str, int]]:
    """n concurrent chat requests; (provider, attempts) of each."""
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key="open", max_retries=0, timeout=20) as aclient:
        async def one() -> tuple[str, int]:
            raw = await aclient.chat.completions.with_raw_response.create(model=model, messages=MESSAGES,
                                                                           max_tokens=4)
            raw.parse()
            return raw.headers["x-gateway-provider"], int(raw.headers["x-gateway-attempts"])
        return list(await asyncio.gather(*(one() for _ in range(n))))


@pytest.fixture
def fakes() -> Any:
    started: list[FakeProvider] = []

    def make(kind: str, **options: Any) -> FakeProvider:
        fake = FakeProvider(kind, models=["m"], **options).start()
        started.append(fake)
        return fake
    yield make
    for fake in started:
        fake.stop()


def test_pool_with_room_is_chosen_before_cheaper_providers(fakes: Any) -> None:
    members = [fakes("vllm"), fakes("vllm")]
    cheap = fakes("deepinfra")
    providers = {"pool": {"kind": "vllm", "endpoints": [m.base_url for m in members], "hourly_cost_usd": 3},
                 "cheap": provider_entry(cheap)}
    models = {"m": {"strategy": "cost", "routes": [
        {"provider": "cheap", "model": "m", "price": price(0.01, 0.01)}, {"provider": "pool", "model": "m"}]}}
    with gateway(providers, models) as gw:
        served = Counter(ask(gw, stream=i % 2 == 1)[0] for i in range(12))
    assert served == {"pool": 12}
    assert posts(cheap) == 0
    assert posts(members[0]) > 0 and posts(members[1]) > 0  # least load spreads over the members


async def test_spill_over_goes_to_the_cheapest_healthy_provider(fakes: Any) -> None:
    pool = fakes("vllm", ttft_s=2.0)  # busy for the whole burst, even on a loaded machine
    broken = fakes("deepinfra", fail_rate=1.0)  # the cheapest, but every answer a 5xx
    mid, dear = fakes("netmind"), fakes("openai")
    providers = {"pool": provider_entry(pool, max_inflight=2), "broken": provider_entry(broken),
                 "mid": provider_entry(mid), "dear": provider_entry(dear)}
    models = {"m": {"routes": [
        {"provider": "dear", "model": "m", "price": price(0.5, 1.5)},
        {"provider": "broken", "model": "m", "price": price(0.01, 0.02)},
        {"provider": "mid", "model": "m", "price": price(0.1, 0.3)},
        {"provider": "pool", "model": "m"}]}}
    with gateway(providers, models, strategy="cost", circuit={"failures": 2, "cooldown_s": 30}) as gw:
        for _ in range(2):
            served = Counter(provider for provider, _ in await burst(gw, 10))
            assert served == {"pool": 2, "mid": 8}  # the pool full at 2 in flight; the rest to the cheapest healthy
            assert route_doc(gw, "m", "broken")["endpoints"][0]["circuit"]["state"] == "open"
            assert posts(broken) == 8  # the first burst met its failures; the second did not ask it
        assert posts(dear) == 0


def test_fallback_hides_a_failing_provider_from_the_client(fakes: Any) -> None:
    flaky = fakes("deepinfra", fail_rate=0.5, seed=1)
    steady = fakes("openai")
    providers = {"flaky": provider_entry(flaky), "steady": provider_entry(steady)}
    models = {"m": {"routes": [{"provider": "flaky", "model": "m", "price": price(0.01, 0.02)},
                               {"provider": "steady", "model": "m", "price": price(0.2, 0.6)}]}}
    # A circuit that never opens, so that every request meets the flaky provider first.
    with gateway(providers, models, strategy="cost", circuit={"failures": 1000, "min_requests": 1000}) as gw:
        results = [ask(gw, stream=i % 2 == 0) for i in range(40)]  # raises on any client error
    assert {provider for provider, _ in results} == {"flaky", "steady"}
    for provider, attempts in results:
        assert (provider, attempts) in {("flaky", 1), ("steady", 2)}
    assert sum(1 for p, _ in results if p == "steady") >= 10


def test_a_provider_that_is_down_never_reaches_the_client_while_another_serves(fakes: Any) -> None:
    steady = fakes("openai")
    providers = {"down": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"},
                 "steady": provider_entry(steady)}
    models = {"m": {"routes": [{"provider": "down", "model": "m", "price": price(0.01, 0.02)},
                               {"provider": "steady", "model": "m", "price": price(0.2, 0.6)}]}}
    with gateway(providers, models, strategy="cost", circuit={"failures": 3, "cooldown_s": 60}) as gw:
        results = [ask(gw, stream=i % 2 == 0) for i in range(8)]
    assert [provider for provider, _ in results] == ["steady"] * 8
    assert [attempts for _, attempts in results] == [2, 2, 2, 1, 1, 1, 1, 1]  # then its circuit is open


def test_circuit_opens_after_consecutive_failures_and_half_opens_after_cooldown(fakes: Any) -> None:
    primary, backup = fakes("deepinfra"), fakes("openai")
    providers = {"primary": provider_entry(primary), "backup": provider_entry(backup)}
    models = {"m": {"routes": [{"provider": "primary", "model": "m", "price": price(0.01, 0.02)},
                               {"provider": "backup", "model": "m", "price": price(0.2, 0.6)}]}}
    with gateway(providers, models, strategy="cost", circuit={"failures": 3, "cooldown_s": COOLDOWN_S}) as gw:
        primary.fail_next(4, status=502)
        assert [ask(gw) for _ in range(3)] == [("backup", 2)] * 3
        opened = time.monotonic()
        circuit = route_doc(gw, "m", "primary")["endpoints"][0]["circuit"]
        assert circuit["state"] == "open" and circuit["consecutive_failures"] == 3
        assert ask(gw) == ("backup", 1) and posts(primary) == 3  # open: not even tried

        wait_until(lambda: route_doc(gw, "m", "primary")["available"], COOLDOWN_S + 5, "the cool-down's end")
        assert time.monotonic() - opened >= COOLDOWN_S - 0.2  # opened a moment before this test saw it
        assert ask(gw) == ("backup", 2)  # the probe met the 4th failure: open again
        reopened = time.monotonic()
        assert posts(primary) == 4 and route_doc(gw, "m", "primary")["endpoints"][0]["circuit"]["state"] == "open"
        assert ask(gw) == ("backup", 1)

        wait_until(lambda: route_doc(gw, "m", "primary")["available"], COOLDOWN_S + 5, "the cool-down's end")
        assert time.monotonic() - reopened >= COOLDOWN_S - 0.2
        assert ask(gw) == ("primary", 1)  # the probe passed: closed
        assert route_doc(gw, "m", "primary")["endpoints"][0]["circuit"]["state"] == "closed"
        assert [ask(gw)[0] for _ in range(3)] == ["primary"] * 3


def test_circuit_opens_on_an_error_ratio_without_failures_in_a_row(fakes: Any) -> None:
    primary, backup = fakes("deepinfra"), fakes("openai")
    providers = {"primary": provider_entry(primary), "backup": provider_entry(backup)}
    models = {"m": {"routes": [{"provider": "primary", "model": "m", "price": price(0.01, 0.02)},
                               {"provider": "backup", "model": "m", "price": price(0.2, 0.6)}]}}
    circuit = {"failures": 100, "error_ratio": 0.5, "min_requests": 6, "window_s": 30, "cooldown_s": 30}
    with gateway(providers, models, strategy="cost", circuit=circuit) as gw:
        for _ in range(3):  # success, failure, three times over: 3 failures of 6, never two in a row
            assert ask(gw) == ("primary", 1)
            primary.fail_next(1, status=500)
            assert ask(gw) == ("backup", 2)
        assert route_doc(gw, "m", "primary")["endpoints"][0]["circuit"]["state"] == "open"
        assert ask(gw) == ("backup", 1)


def test_429_cools_a_route_down_for_retry_after(fakes: Any) -> None:
    primary, backup = fakes("deepinfra"), fakes("openai")
    providers = {"primary": provider_entry(primary), "backup": provider_entry(backup)}
    models = {"m": {"routes": [{"provider": "primary", "model": "m", "price": price(0.01, 0.02)},
                               {"provider": "backup", "model": "m", "price": price(0.2, 0.6)}]}}
    with gateway(providers, models, strategy="cost") as gw:
        primary.fail_next(1, status=429, headers={"retry-after": str(int(COOLDOWN_S))})
        asked = time.monotonic()
        assert ask(gw) == ("backup", 2)
        assert [ask(gw) for _ in range(3)] == [("backup", 1)] * 3  # cooling down: not asked
        doc = route_doc(gw, "m", "primary")
        assert doc["why"] == "cooling down after 429" and doc["endpoints"][0]["circuit"]["state"] == "closed"
        assert posts(primary) == 1
        wait_until(lambda: route_doc(gw, "m", "primary")["why"] == "per-token", COOLDOWN_S + 5, "the 429's end")
        assert time.monotonic() - asked >= int(COOLDOWN_S) - 0.1
        assert ask(gw) == ("primary", 1)


def test_a_lone_route_cooling_down_is_still_asked_and_its_429_reaches_the_client(fakes: Any) -> None:
    only = fakes("openai")
    with gateway({"only": provider_entry(only)}, {"m": {"routes": [{"provider": "only", "model": "m"}]}}) as gw:
        only.fail_next(2, status=429, headers={"retry-after": "30"})
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as caught:
                ask(gw)
            assert caught.value.response.headers["retry-after"] == "30"
        assert ask(gw) == ("only", 1)


def test_each_strategy_chooses_as_it_promises(fakes: Any) -> None:
    # Far enough apart that one sample slowed by a loaded machine (a tenth of a second) changes no rank.
    cheap_slow = fakes("deepinfra", ttft_s=0.5)
    mid = fakes("netmind", ttft_s=0.25)
    dear_fast = fakes("openai", ttft_s=0.01)
    providers = {"cheap_slow": provider_entry(cheap_slow), "mid": provider_entry(mid),
                 "dear_fast": provider_entry(dear_fast)}
    routes = [{"provider": "dear_fast", "model": "m", "price": price(2.0, 15.0)},
              {"provider": "cheap_slow", "model": "m", "price": price(0.02, 0.05)},
              {"provider": "mid", "model": "m", "price": price(0.1, 0.3)}]
    models = {f"m-{s}": {"strategy": s, "routes": routes} for s in ("cost", "latency", "balanced", "ordered")}
    # With 100 output tokens: cheap 5e-6 USD, mid 3e-5, dear 1.5e-3; at 0.001 USD a second,
    # cheap's 0.5 s is worth 5e-4 and mid's 0.25 s 2.5e-4: balanced lands on mid, the best of both.
    with gateway(providers, models, usd_per_second=0.001) as gw:
        served = {}
        for strategy in ("cost", "latency", "balanced", "ordered"):
            picks = [ask(gw, f"m-{strategy}", stream=True, max_tokens=100)[0] for _ in range(10)]
            served[strategy] = picks[-6:]  # after every route has been measured once
    assert served == {"cost": ["cheap_slow"] * 6, "latency": ["dear_fast"] * 6, "balanced": ["mid"] * 6,
                      "ordered": ["dear_fast"] * 6}


def test_no_second_attempt_after_the_first_byte(fakes: Any) -> None:
    stalls, backup = fakes("deepinfra", token_delay_s=2.0), fakes("openai")
    providers = {"stalls": provider_entry(stalls, timeouts={"idle_s": 0.3}), "backup": provider_entry(backup)}
    models = {"m": {"routes": [{"provider": "stalls", "model": "m", "price": price(0.01, 0.02)},
                               {"provider": "backup", "model": "m", "price": price(0.2, 0.6)}]}}
    with gateway(providers, models, strategy="cost") as gw:
        stream = client(gw).chat.completions.create(model="m", messages=MESSAGES, max_tokens=4, stream=True)
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
        assert posts(backup) == 0
        assert route_doc(gw, "m", "stalls")["endpoints"][0]["circuit"]["consecutive_failures"] == 1


def test_killed_pool_member_is_taken_out_without_a_client_error(fakes: Any) -> None:
    members = [fakes("vllm"), fakes("vllm")]
    paid = fakes("openai")
    providers = {"pool": {"kind": "vllm", "endpoints": [m.base_url for m in members]},
                 "paid": provider_entry(paid)}
    models = {"m": {"routes": [{"provider": "pool", "model": "m"},
                               {"provider": "paid", "model": "m", "price": price(0.2, 0.6)}]}}
    with gateway(providers, models, metrics_poll_s=0.2) as gw:
        assert Counter(ask(gw)[0] for _ in range(6)) == {"pool": 6}
        members[1].kill_engine()  # /health 503, generation 500
        after = [ask(gw, stream=i % 2 == 0) for i in range(6)]
        deadline = time.monotonic() + 10
        while route_doc(gw, "m", "pool")["endpoints"][1]["healthy"] and time.monotonic() < deadline:
            time.sleep(0.05)  # until a /health probe has seen it
        doc = route_doc(gw, "m", "pool")
        assert [e["healthy"] for e in doc["endpoints"]] == [True, False]
        before = posts(members[1])
        later = [ask(gw) for _ in range(6)]
        assert posts(members[1]) == before  # out of the pool
        members[0].stop()  # the other one gone outright: connection refused
        gone = [ask(gw) for _ in range(3)]
    assert all(provider in ("pool", "paid") for provider, _ in after)
    assert [provider for provider, _ in later] == ["pool"] * 6
    assert [provider for provider, _ in gone] == ["paid"] * 3


def test_admin_routes_explains_every_route_with_its_signals_and_rank(fakes: Any) -> None:
    pool = fakes("vllm", ttft_s=1.5, max_running=1)
    cheap = fakes("deepinfra")
    providers = {"pool": provider_entry(pool, max_waiting=1, hourly_cost_usd=2.5), "cheap": provider_entry(cheap)}
    models = {"m": {"routes": [{"provider": "pool", "model": "m"},
                               {"provider": "cheap", "model": "m", "price": price(0.02, 0.05)}]}}
    with gateway(providers, models, metrics_poll_s=0.1) as gw:
        assert ask(gw, stream=True) == ("pool", 1)
        # Load the pool behind the gateway's back: only the scraped queue can tell.
        with httpx.Client(timeout=10) as direct:
            body = {"model": "m", "messages": MESSAGES, "max_tokens": 4}
            threads = [threading.Thread(target=direct.post, args=(pool.base_url + "/chat/completions",),
                                        kwargs={"json": body}) for _ in range(2)]  # one runs, one waits
            for thread in threads:
                thread.start()
            pool.wait_until(lambda: pool.waiting >= 1)
            deadline = time.monotonic() + 1.2
            table = route_table(gw)["m"]
            while table["routes"][0]["provider"] == "pool" and time.monotonic() < deadline:
                time.sleep(0.05)  # until a scrape has seen the queue
                table = route_table(gw)["m"]
            assert ask(gw) == ("cheap", 1)  # the queue is full: spill
            for thread in threads:
                thread.join()
    assert table["strategy"] == "balanced"
    first, second = table["routes"]
    assert (first["provider"], first["rank"], first["why"]) == ("cheap", 0, "per-token")
    assert (second["provider"], second["rank"], second["why"]) == ("pool", 1, "pool is full")
    member = second["endpoints"][0]
    assert member["waiting"] >= 1 and member["running"] == 1 and member["room"] is False
    assert member["healthy"] and member["model_listed"] is True and member["circuit"]["state"] == "closed"
    assert second["hourly_cost_usd"] == 2.5 and second["ttft_s"] == pytest.approx(1.5, abs=0.5)
    assert first["price_per_mtok_usd"] == {"input": 0.02, "output": 0.05}
    assert first["estimated_cost_usd"] > 0 and second["estimated_cost_usd"] == 0


def test_routing_adds_no_network_call_to_the_hot_path(fakes: Any) -> None:
    pool, paid = fakes("vllm"), fakes("openai")
    providers = {"pool": provider_entry(pool), "paid": provider_entry(paid)}
    models = {"m": {"routes": [{"provider": "pool", "model": "m"},
                               {"provider": "paid", "model": "m", "price": price(0.2, 0.6)}]}}
    with gateway(providers, models, metrics_poll_s=30, models_poll_s=60) as gw:
        probes, listings = len(pool.probes), len(pool.requests) - posts(pool)
        for i in range(30):
            ask(gw, stream=i % 3 == 0)
        assert len(pool.probes) == probes  # /health and /metrics only on the poller's timer
        assert len(pool.requests) - posts(pool) == listings and posts(pool) == 30
        assert len(paid.requests) - posts(paid) == 1  # its one /models poll at start-up


def test_clients_narrow_the_choice_by_header_or_body_but_never_widen_it(fakes: Any) -> None:
    pool, cheap, dear = fakes("vllm"), fakes("deepinfra"), fakes("openai")
    providers = {"pool": provider_entry(pool), "cheap": provider_entry(cheap), "dear": provider_entry(dear)}
    models = {"m": {"routes": [{"provider": "pool", "model": "m"},
                               {"provider": "cheap", "model": "m", "price": price(0.02, 0.05)},
                               {"provider": "dear", "model": "m", "price": price(0.5, 1.5)}]},
              "secret": {"routes": [{"provider": "dear", "model": "m", "price": price(0.5, 1.5)}]}}
    teams = {"t": {"models": ["m"], "keys": ["sk-team"]}}
    with GatewayProcess({"providers": providers, "models": models, "teams": teams}) as gw:
        sdk = openai.OpenAI(base_url=gw.base_url, api_key="sk-team", max_retries=0)
        raw = sdk.chat.completions.with_raw_response.create(model="m", messages=MESSAGES,
                                                            extra_headers={"x-gateway-route": "dear"})
        assert raw.headers["x-gateway-provider"] == "dear"
        raw = sdk.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES, extra_body={"gateway": {"providers": ["cheap", "dear"]}})
        assert raw.headers["x-gateway-provider"] == "cheap"
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="m", messages=MESSAGES,
                                        extra_body={"gateway": {"providers": ["dear"], "max_price_per_mtok": 1}})
        assert caught.value.body["code"] == "no_matching_route"
        with pytest.raises(openai.PermissionDeniedError):  # a team's models bound every narrowing
            sdk.chat.completions.create(model="secret", messages=MESSAGES, extra_headers={"x-gateway-route": "dear"},
                                        extra_body={"gateway": {"providers": ["dear"]}})
    assert posts(dear) == 1 and posts(cheap) == 1 and posts(pool) == 0


def test_no_usable_route_is_a_503_with_retry_after(fakes: Any) -> None:
    only = fakes("openai")
    with gateway({"only": provider_entry(only)}, {"m": {"routes": [{"provider": "only", "model": "m"}]}},
                 circuit={"failures": 2, "cooldown_s": 20}) as gw:
        only.fail_next(2, status=500)
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                ask(gw)
        with pytest.raises(openai.InternalServerError) as caught:
            ask(gw)
    assert caught.value.status_code == 503 and caught.value.body["code"] == "no_route_available"
    assert 19 <= int(caught.value.response.headers["retry-after"]) <= 20
    assert posts(only) == 2
