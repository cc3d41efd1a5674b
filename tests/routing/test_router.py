"""Specifications of ranking, narrowing and feedback, on the Router alone: no network, a driven clock."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import orjson
import pytest

from gateway.call import Call, read_call
from gateway.config import ModelConfig, parse_config
from gateway.errors import GatewayError
from gateway.routing import Router
from gateway.routing.health import OPEN
from gateway.routing.route import Route

POOL = {"kind": "vllm", "endpoints": ["http://gpu-1:8000/v1", "http://gpu-2:8000/v1"],
        "max_waiting": 2, "max_inflight": 3, "hourly_cost_usd": 2.0}
PROVIDERS = {
    "pool": POOL,
    "cheap": {"kind": "deepinfra", "api_key": "k", "base_url": "http://cheap.test/v1"},
    "mid": {"kind": "netmind", "api_key": "k", "base_url": "http://mid.test/v1"},
    "dear": {"kind": "openai", "api_key": "k", "base_url": "http://dear.test/v1"},
}
ROUTES = [
    {"provider": "pool", "model": "tiny"},
    {"provider": "dear", "model": "m", "price": {"input_per_mtok": 0.50, "output_per_mtok": 1.50}},
    {"provider": "cheap", "model": "m", "price": {"input_per_mtok": 0.02, "output_per_mtok": 0.05}},
    {"provider": "mid", "model": "m", "price": {"input_per_mtok": 0.10, "output_per_mtok": 0.30}},
]
MODEL = ModelConfig.model_construct(name="m", routes=())  # plan() reads only the name


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(routes: list[dict[str, Any]] | None = None, strategy: str | None = None,
         **routing: Any) -> tuple[Router, Clock]:
    model: dict[str, Any] = {"routes": routes or ROUTES}
    if strategy:
        model["strategy"] = strategy
    config = parse_config({"providers": PROVIDERS, "models": {"m": model},
                           "routing": {"circuit": {"failures": 3, "cooldown_s": 10}, **routing}}, {})
    clock = Clock()
    return Router(config, clock=clock), clock


def call(**body: Any) -> Call:
    doc = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 100, **body}
    return read_call(orjson.dumps(doc), "chat")


def order(router: Router, request: Call | None = None, header: str | None = None) -> list[str]:
    """Provider names in plan order, without the repeats for a second pool member or last resort."""
    names: list[str] = []
    for candidate, _ in router.plan(MODEL, request or call(), header):
        if candidate.name not in names:
            names.append(candidate.name)
    return names


def route(router: Router, name: str) -> Route:
    return next(r for r in router.routes["m"] if r.name == name)


def fill_pool(router: Router) -> None:
    for endpoint in route(router, "pool").endpoints:
        endpoint.inflight = 3


def measure(router: Router, clock: Clock, name: str, ttft: float, tpot: float = 0.0) -> None:
    r = route(router, name)
    endpoint = router.begin(r, [])
    assert endpoint is not None
    router.opened(r, endpoint, started=0.0, first_byte_at=ttft, stream=True)
    router.end(r, endpoint, status=200, started=0.0, first_byte_at=ttft, ended_at=ttft + tpot * 10,
               completion_tokens=11, stream=True)


def fail(router: Router, name: str, status: int = 503, code: str | None = None,
         headers: dict[str, str] | None = None) -> None:
    r = route(router, name)
    endpoint = router.begin(r, [])
    assert endpoint is not None
    router.failed(r, endpoint, GatewayError(status, "x", code=code, headers=headers, retryable=True))


# --- the pool first ---------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["balanced", "cost", "latency", "ordered"])
def test_pool_with_room_is_chosen_before_cheaper_providers(strategy: str) -> None:
    routes = [ROUTES[2], ROUTES[1], ROUTES[0]]  # the pool listed last, behind a cheaper route
    router, clock = make(routes, strategy)
    measure(router, clock, "pool", ttft=2.0)  # even when it is the slowest
    measure(router, clock, "cheap", ttft=0.1)
    assert order(router)[0] == "pool"


def test_spill_over_goes_to_the_cheapest_healthy_provider_and_keeps_the_pool_as_last_resort() -> None:
    router, clock = make(strategy="cost")
    fill_pool(router)
    plan = router.plan(MODEL, call())
    assert [(r.name, room_only) for r, room_only in plan] == [
        ("cheap", False), ("mid", False), ("dear", False), ("pool", False), ("pool", False)]


def test_pool_has_no_room_once_its_scraped_queue_reaches_max_waiting() -> None:
    router, _ = make(strategy="cost")
    for endpoint in route(router, "pool").endpoints:
        endpoint.waiting = 2.0
    assert order(router)[0] == "cheap"
    route(router, "pool").endpoints[1].waiting = 1.0
    assert order(router)[0] == "pool"


def test_a_scraped_queue_grows_with_every_request_sent_since_the_scrape() -> None:
    router, _ = make(strategy="cost")
    pool = route(router, "pool")
    for endpoint in pool.endpoints:
        endpoint.waiting, endpoint.inflight_at_scrape = 1.0, 0
    assert order(router)[0] == "pool"
    for endpoint in pool.endpoints:
        endpoint.inflight = 1  # one more sent since: the queue is now two long
    assert order(router)[0] == "cheap"
    for endpoint in pool.endpoints:
        endpoint.waiting, endpoint.inflight_at_scrape = 0.0, 1  # a server not queueing is believed
    assert order(router)[0] == "pool"


def test_pool_room_plan_tries_a_second_member_then_spills_and_queues_last() -> None:
    router, _ = make(strategy="cost")
    plan = router.plan(MODEL, call())
    assert [(r.name, room_only) for r, room_only in plan] == [
        ("pool", True), ("pool", True), ("cheap", False), ("mid", False), ("dear", False), ("pool", False)]


def test_pool_member_is_picked_by_least_load_of_two() -> None:
    router, _ = make()
    pool = route(router, "pool")
    pool.endpoints[0].inflight = 2
    for _ in range(20):
        assert router.begin(pool, []) is pool.endpoints[1]
        pool.endpoints[1].inflight -= 1


def test_second_try_in_a_pool_goes_to_another_member() -> None:
    router, _ = make()
    pool = route(router, "pool")
    first = router.begin(pool, [], room_only=True)
    assert first is not None
    second = router.begin(pool, [first], room_only=True)
    assert second is not None and second is not first
    assert router.begin(pool, [first, second]) is None


def test_a_pool_that_filled_up_since_the_plan_is_skipped_where_only_room_will_do() -> None:
    router, _ = make()
    pool = route(router, "pool")
    fill_pool(router)
    assert router.begin(pool, [], room_only=True) is None
    endpoint = router.begin(pool, [], room_only=False)
    assert endpoint is not None and endpoint.inflight == 4


# --- strategies -------------------------------------------------------------------------------

def test_cost_strategy_orders_by_the_estimated_cost_of_the_request() -> None:
    router, clock = make(strategy="cost")
    fill_pool(router)
    measure(router, clock, "cheap", ttft=3.0)  # cost ignores speed
    measure(router, clock, "dear", ttft=0.1)
    assert order(router)[:3] == ["cheap", "mid", "dear"]


def test_cost_strategy_weighs_input_and_output_prices_by_the_request_size() -> None:
    routes = [{"provider": "cheap", "model": "m", "price": {"input_per_mtok": 1.0, "output_per_mtok": 0.1}},
              {"provider": "mid", "model": "m", "price": {"input_per_mtok": 0.1, "output_per_mtok": 1.0}}]
    router, _ = make(routes, "cost")
    long_prompt = call(messages=[{"role": "user", "content": "x" * 40_000}], max_tokens=10)
    long_answer = call(messages=[{"role": "user", "content": "x"}], max_tokens=200)
    assert order(router, long_prompt) == ["mid", "cheap"]
    assert order(router, long_answer) == ["cheap", "mid"]


def test_latency_strategy_tries_unmeasured_routes_then_keeps_to_the_fastest() -> None:
    router, clock = make(strategy="latency")
    fill_pool(router)
    measure(router, clock, "cheap", ttft=0.8)
    assert order(router)[:2] == ["mid", "dear"]  # never measured: worth a try
    measure(router, clock, "mid", ttft=0.5)
    measure(router, clock, "dear", ttft=0.2)
    assert order(router)[:3] == ["dear", "mid", "cheap"]


def test_latency_counts_time_per_token_over_a_typical_answer() -> None:
    router, clock = make(strategy="latency")
    fill_pool(router)
    for name in ("cheap", "mid", "dear"):
        measure(router, clock, name, ttft=0.1, tpot={"cheap": 0.05, "mid": 0.01, "dear": 0.03}[name])
    assert order(router)[:3] == ["mid", "dear", "cheap"]


def test_balanced_strategy_weighs_cost_against_latency() -> None:
    # 100 prompt tokens and 100 output tokens: cheap costs 7e-6 USD, dear 2e-4 USD, 1.93e-4 more.
    router, clock = make(strategy="balanced", usd_per_second=0.0001)
    fill_pool(router)
    for name in ("mid",):
        route(router, name).circuits[0].state = OPEN
        route(router, name).circuits[0].reopen_at = clock.now + 100
    measure(router, clock, "cheap", ttft=1.5)
    measure(router, clock, "dear", ttft=0.2)
    # 1.3 s slower is worth 1.3e-4 USD at this rate: less than the price gap, so cheap wins.
    assert order(router)[:2] == ["cheap", "dear"]
    router2, clock2 = make(strategy="balanced", usd_per_second=0.001)
    fill_pool(router2)
    route(router2, "mid").circuits[0].state = OPEN
    route(router2, "mid").circuits[0].reopen_at = clock2.now + 100
    measure(router2, clock2, "cheap", ttft=1.5)
    measure(router2, clock2, "dear", ttft=0.2)
    # At ten times the rate the same 1.3 s is worth 1.3e-3 USD: speed wins.
    assert order(router2)[:2] == ["dear", "cheap"]


def test_balanced_weights_scale_each_term() -> None:
    router, clock = make(strategy="balanced", usd_per_second=0.001, weights={"cost": 1, "latency": 0})
    fill_pool(router)
    measure(router, clock, "cheap", ttft=3.0)
    measure(router, clock, "mid", ttft=3.0)
    measure(router, clock, "dear", ttft=0.1)
    assert order(router)[:3] == ["cheap", "mid", "dear"]


def test_ordered_strategy_keeps_the_config_order_after_a_pool_with_room() -> None:
    router, clock = make(strategy="ordered")
    assert order(router) == ["pool", "dear", "cheap", "mid"]
    fill_pool(router)
    assert order(router) == ["dear", "cheap", "mid", "pool"]


def test_global_strategy_applies_where_a_model_names_none() -> None:
    models = {"m": {"routes": ROUTES}, "n": {"routes": ROUTES, "strategy": "latency"}}
    config = parse_config({"providers": PROVIDERS, "models": models, "routing": {"strategy": "cost"}}, {})
    assert Router(config).strategies == {"m": "cost", "n": "latency"}
    assert Router(parse_config({"providers": PROVIDERS, "models": {"m": {"routes": ROUTES}}}, {})
                  ).strategies == {"m": "balanced"}


def test_routes_slower_than_max_ttft_go_after_the_fast_enough_ones() -> None:
    router, clock = make(strategy="cost", max_ttft_s=1.0)
    fill_pool(router)
    measure(router, clock, "cheap", ttft=2.5)
    measure(router, clock, "mid", ttft=0.4)
    measure(router, clock, "dear", ttft=0.3)
    assert order(router)[:3] == ["mid", "dear", "cheap"]


# --- health -----------------------------------------------------------------------------------

def test_open_circuit_takes_a_route_out_until_its_probe() -> None:
    router, clock = make(strategy="cost")
    fill_pool(router)
    for _ in range(3):
        fail(router, "cheap")
    assert route(router, "cheap").circuits[0].state == OPEN
    assert "cheap" not in order(router)
    clock.now += 10
    assert order(router)[0] == "cheap"  # half-open: one probe may go
    probe = router.begin(route(router, "cheap"), [])
    assert probe is not None
    assert "cheap" not in order(router)  # nobody else while the probe is out
    router.opened(route(router, "cheap"), probe, started=0.0, first_byte_at=0.1, stream=False)
    assert order(router)[0] == "cheap"


def test_429_cools_a_route_down_for_retry_after() -> None:
    router, clock = make(strategy="cost")
    fill_pool(router)
    fail(router, "cheap", status=429, headers={"retry-after": "5"})
    assert order(router) == ["mid", "dear", "pool", "cheap"]  # still there, but last
    assert route(router, "cheap").circuits[0].state != OPEN
    clock.now += 5
    assert order(router)[0] == "cheap"


def test_retry_after_may_be_an_http_date_and_defaults_when_absent() -> None:
    router, clock = make(strategy="cost", rate_limit_cooldown_s=2.0)
    fill_pool(router)
    fail(router, "cheap", status=429, headers={"retry-after": email.utils.formatdate(time.time() + 30,
                                                                                      usegmt=True)})
    assert route(router, "cheap").circuits[0].cool_until == pytest.approx(clock.now + 30, abs=1.5)
    fail(router, "mid", status=429)
    assert route(router, "mid").circuits[0].cool_until == clock.now + 2.0


def test_client_errors_do_not_count_against_a_route() -> None:
    router, _ = make()
    for _ in range(5):
        fail(router, "cheap", status=400)
    assert route(router, "cheap").circuits[0].consecutive == 0


def test_refused_connection_takes_a_pool_member_out_until_a_health_probe_passes() -> None:
    router, _ = make()
    pool = route(router, "pool")
    endpoint = router.begin(pool, [])
    assert endpoint is not None
    router.failed(pool, endpoint, GatewayError(502, "x", code="upstream_unreachable", retryable=True))
    assert not endpoint.healthy
    other = next(e for e in pool.endpoints if e is not endpoint)
    assert all(router.begin(pool, []) is other for _ in range(10))


def test_no_usable_route_is_a_503_with_retry_after() -> None:
    router, clock = make([ROUTES[1], ROUTES[2]])
    for name in ("dear", "cheap"):
        for _ in range(3):
            fail(router, name)
    clock.now += 3
    with pytest.raises(GatewayError) as caught:
        router.plan(MODEL, call())
    assert caught.value.status == 503 and caught.value.code == "no_route_available"
    assert caught.value.headers["retry-after"] == "7"
    assert "dear: circuit open" in caught.value.message


def test_a_model_the_provider_does_not_list_takes_its_route_out() -> None:
    router, _ = make(strategy="cost")
    fill_pool(router)
    route(router, "cheap").endpoints[0].models = frozenset({"other"})
    assert "cheap" not in order(router)
    route(router, "cheap").endpoints[0].models = frozenset({"m", "other"})
    assert order(router)[0] == "cheap"


def test_an_unhealthy_pool_is_left_out_and_the_request_spills() -> None:
    router, _ = make(strategy="cost")
    for endpoint in route(router, "pool").endpoints:
        endpoint.healthy = False
    assert order(router) == ["cheap", "mid", "dear"]


# --- learning from traffic --------------------------------------------------------------------

def test_latency_estimates_follow_the_configured_smoothing_and_are_forgotten_when_unused() -> None:
    router, clock = make(strategy="latency", latency={"alpha": 0.5, "forget_after_s": 60})
    fill_pool(router)
    measure(router, clock, "cheap", ttft=0.2)
    measure(router, clock, "cheap", ttft=1.0)  # half-way to the new sample: 0.6
    assert route(router, "cheap").ttft.get(clock.now) == pytest.approx(0.6)
    measure(router, clock, "mid", ttft=0.4)
    measure(router, clock, "dear", ttft=0.5)
    assert order(router)[:3] == ["mid", "dear", "cheap"]
    clock.now += 30
    measure(router, clock, "mid", ttft=0.4)
    measure(router, clock, "dear", ttft=0.5)
    clock.now += 31  # cheap's estimate is now 61 s old: unknown again, so worth a new try
    assert route(router, "cheap").ttft.get(clock.now) is None
    assert order(router)[:3] == ["cheap", "mid", "dear"]


def test_streams_feed_ttft_and_time_per_token() -> None:
    router, clock = make()
    r = route(router, "cheap")
    endpoint = router.begin(r, [])
    assert endpoint is not None and endpoint.inflight == 1
    router.opened(r, endpoint, started=10.0, first_byte_at=10.4, stream=True)
    router.end(r, endpoint, status=200, started=10.0, first_byte_at=10.4, ended_at=11.4, completion_tokens=11,
               stream=True)
    assert endpoint.inflight == 0
    assert r.ttft.get(clock.now) == pytest.approx(0.4) and r.tpot.get(clock.now) == pytest.approx(0.1)


def test_whole_bodies_feed_ttft_with_the_known_per_token_time_taken_out() -> None:
    router, clock = make()
    r = route(router, "cheap")
    r.tpot.add(0.1, clock.now)
    endpoint = router.begin(r, [])
    assert endpoint is not None
    router.opened(r, endpoint, started=0.0, first_byte_at=1.5, stream=False)
    router.end(r, endpoint, status=200, started=0.0, first_byte_at=1.5, ended_at=1.5, completion_tokens=11,
               stream=False)
    assert r.ttft.get(clock.now) == pytest.approx(0.5)


def test_a_stream_that_breaks_after_its_first_byte_counts_as_a_failure() -> None:
    router, _ = make()
    r = route(router, "cheap")
    endpoint = router.begin(r, [])
    assert endpoint is not None
    router.opened(r, endpoint, started=0.0, first_byte_at=0.1, stream=True)
    router.end(r, endpoint, status=502, started=0.0, first_byte_at=0.1, ended_at=0.5, completion_tokens=3,
               stream=True)
    assert r.circuits[0].consecutive == 1


def test_a_cancelled_attempt_is_no_longer_in_flight_and_frees_the_probe() -> None:
    router, clock = make()
    r = route(router, "cheap")
    for _ in range(3):
        fail(router, "cheap")
    clock.now += 10
    endpoint = router.begin(r, [])
    assert endpoint is not None and r.circuits[0].probing
    router.release(r, endpoint)
    assert endpoint.inflight == 0 and not r.circuits[0].probing


# --- narrowing --------------------------------------------------------------------------------

def test_header_narrows_the_routes_to_the_named_providers() -> None:
    router, _ = make(strategy="cost")
    assert order(router, header="dear, mid") == ["mid", "dear"]


def test_body_narrows_by_providers_and_by_price() -> None:
    router, _ = make(strategy="cost")
    assert order(router, call(gateway={"providers": ["pool", "dear"]})) == ["pool", "dear"]
    assert order(router, call(gateway={"max_price_per_mtok": 0.3})) == ["pool", "cheap", "mid"]
    both = call(gateway={"providers": ["dear", "mid"], "max_price_per_mtok": 0.3})
    assert order(router, both, header="mid,cheap") == ["mid"]


@pytest.mark.parametrize("narrowing, header, param", [
    ({"providers": ["elsewhere"]}, None, "gateway.providers"),
    (None, "other-provider", "gateway.providers"),
    ({"providers": ["dear"], "max_price_per_mtok": 0.1}, None, "gateway.max_price_per_mtok"),
    ({"providers": "dear"}, None, "gateway.providers"),
    ({"max_price_per_mtok": -1}, None, "gateway.max_price_per_mtok"),
    ({"provider": ["dear"]}, None, "gateway.provider"),
])
def test_narrowing_never_widens_and_names_what_is_wrong(narrowing: Any, header: str | None, param: str) -> None:
    router, _ = make()
    body = {"gateway": narrowing} if narrowing is not None else {}
    with pytest.raises(GatewayError) as caught:
        router.plan(MODEL, call(**body), header)
    assert caught.value.status == 400 and caught.value.param == param


# --- explaining -------------------------------------------------------------------------------

def test_describe_shows_every_route_with_its_signals_and_rank() -> None:
    router, clock = make(strategy="cost")
    measure(router, clock, "cheap", ttft=0.3, tpot=0.01)
    for _ in range(3):
        fail(router, "dear")
    pool = route(router, "pool")
    pool.endpoints[0].waiting, pool.endpoints[0].running, pool.endpoints[0].kv_cache_usage = 1.0, 3.0, 0.5
    pool.endpoints[0].scraped_at = clock.now - 1
    table = router.describe()["m"]
    assert table["strategy"] == "cost"
    docs = {d["provider"]: d for d in table["routes"]}
    assert [d["provider"] for d in table["routes"]] == ["pool", "cheap", "mid", "dear"]
    assert [d["rank"] for d in table["routes"]] == [0, 1, 2, None]
    assert docs["pool"]["why"] == "pool with room" and docs["pool"]["hourly_cost_usd"] == 2.0
    assert docs["pool"]["endpoints"][0] | {"circuit": None} == docs["pool"]["endpoints"][0] | {
        "url": "http://gpu-1:8000/v1", "usable": True, "healthy": True, "inflight": 0, "waiting": 1.0,
        "running": 3.0, "kv_cache_usage": 0.5, "queue_estimate": 1.0, "room": True, "scrape_age_s": 1.0,
        "model_listed": None, "circuit": None}
    assert docs["cheap"]["ttft_s"] == pytest.approx(0.3) and docs["cheap"]["tpot_s"] == pytest.approx(0.01)
    assert docs["cheap"]["price_per_mtok_usd"] == {"input": 0.02, "output": 0.05}
    assert docs["dear"]["available"] is False and docs["dear"]["why"] == "circuit open"
    assert docs["dear"]["endpoints"][0]["circuit"]["state"] == "open"
    assert docs["dear"]["endpoints"][0]["circuit"]["reopen_in_s"] == 10.0
    orjson.dumps(table)  # the admin API serves it as JSON


def test_a_route_whose_context_window_the_request_cannot_fit_is_left_out() -> None:
    routes = [{**ROUTES[2], "context_window": 2_000}, {**ROUTES[3], "context_window": 128_000}]
    router, _ = make(routes, strategy="cost")
    assert order(router, call(max_tokens=100)) == ["cheap", "mid"]
    assert order(router, call(max_tokens=1_950)) == ["mid"]  # 100 prompt tokens (400 bytes / 4) + 1,950


def test_no_route_with_room_for_the_request_is_a_400_naming_what_to_shorten() -> None:
    routes = [{**ROUTES[2], "context_window": 2_000}, {**ROUTES[3], "context_window": 4_000}]
    router, _ = make(routes)
    with pytest.raises(GatewayError) as too_long:
        order(router, call(max_tokens=8_000))
    assert (too_long.value.status, too_long.value.code, too_long.value.param) == (
        400, "context_length_exceeded", "max_tokens")
    with pytest.raises(GatewayError) as long_prompt:
        order(router, call(max_tokens=10, messages=[{"role": "user", "content": "x" * 40_000}]))
    assert long_prompt.value.param == "messages" and "4000 tokens" in long_prompt.value.message


def test_a_route_without_a_known_window_is_never_left_out() -> None:
    router, _ = make([{**ROUTES[2], "context_window": 1_000}, ROUTES[3]], strategy="cost")
    assert order(router, call(max_tokens=50_000)) == ["mid"]


# --- a reload: what the router learnt stays with the routes that stay -------------------------

def reloaded(router: Router, clock: Clock, routes: list[dict[str, Any]], **routing: Any) -> Router:
    config = parse_config({"providers": PROVIDERS, "models": {"m": {"routes": routes}},
                           "routing": {"circuit": {"failures": 3, "cooldown_s": 10}, **routing}}, {})
    return Router(config, clock=clock, previous=router)


def test_a_reload_keeps_the_circuits_latencies_and_endpoint_load_of_routes_that_stay() -> None:
    router, clock = make()
    for _ in range(3):
        fail(router, "mid")
    measure(router, clock, "cheap", ttft=0.4, tpot=0.02)
    pool_member = route(router, "pool").endpoints[0]
    pool_member.inflight, pool_member.waiting = 2, 5.0
    repriced = [{**r, "price": {"input_per_mtok": 0.01, "output_per_mtok": 0.01}} if r["provider"] == "mid" else r
                for r in ROUTES]
    after = reloaded(router, clock, repriced)
    assert route(after, "mid").circuits[0].state == OPEN  # still cooling after its failures
    assert "mid" not in order(after)
    assert route(after, "cheap").ttft.get(clock()) == pytest.approx(0.4)
    assert route(after, "pool").endpoints[0] is pool_member  # load and health go on
    assert route(after, "mid").price.input_per_mtok_nano == 10_000_000  # the new price


def test_a_request_running_on_the_previous_router_reports_to_the_state_the_new_one_reads() -> None:
    router, clock = make()
    before = route(router, "dear")
    endpoint = router.begin(before, [])
    after = reloaded(router, clock, ROUTES)
    assert endpoint is not None and endpoint.inflight == 1
    router.failed(before, endpoint, GatewayError(503, "x", retryable=True))  # the old request ends
    assert route(after, "dear").endpoints[0].inflight == 0
    assert route(after, "dear").circuits[0] is before.circuits[0]


def test_a_new_route_starts_unmeasured_and_a_changed_breaker_starts_every_circuit_afresh() -> None:
    router, clock = make(ROUTES[:3])
    for _ in range(3):
        fail(router, "cheap")
    after = reloaded(router, clock, ROUTES)
    assert route(after, "mid").ttft.get(clock()) is None
    assert route(after, "cheap").circuits[0].state == OPEN
    stricter = reloaded(router, clock, ROUTES, circuit={"failures": 2, "cooldown_s": 10})
    assert route(stricter, "cheap").circuits[0].state != OPEN
