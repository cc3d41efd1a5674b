"""Specifications of the background pollers: /metrics, /health and /v1/models, against loopback fakes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config import parse_config
from gateway.routing import Router, Signals
from gateway.routing.cards import parse_cards
from gateway.routing.signals import parse_load
from tests.fakes import FakeProvider
from tests.waiting import keeps_holding

REAL_VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 2.0
vllm:num_requests_running{engine="1",model_name="tiny"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 4.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="tiny",reason="capacity"} 9.0
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="tiny"} 0.5 1712345678000
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="tiny"} 3.0
"""


def test_parse_load_reads_vllm_gauges_summed_over_engines() -> None:
    assert parse_load(REAL_VLLM_METRICS) == {"running": 3.0, "waiting": 4.0, "kv": 0.5}
    assert parse_load("vllm:gpu_cache_usage_perc 0.75\n") == {"kv": 0.75}  # the name before 0.10
    assert parse_load("garbage\nvllm:num_requests_waiting{x=\"1\"} nan-ish\n") == {}


def test_parse_load_reads_the_whole_page_of_a_real_vllm_server_under_load() -> None:
    page = (Path(__file__).resolve().parents[2] / "bench" / "data" / "vllm-metrics.txt").read_text()
    load = parse_load(page)
    assert load["running"] == 24.0 and load["waiting"] == 0.0 and 0.04 < load["kv"] < 0.042


def test_parse_cards_reads_openai_lists_and_bare_lists() -> None:
    assert set(parse_cards(b'{"object":"list","data":[{"id":"a"},{"id":"b"}]}')) == {"a", "b"}
    assert set(parse_cards(b'[{"id":"a"}]')) == {"a"}
    assert parse_cards(b"<html>") is None and parse_cards(b'{"error":"x"}') is None


def build(fakes: dict[str, FakeProvider], models_poll_s: float = 60,
          metrics_timeout_s: float = 5.0) -> tuple[Router, Signals]:
    providers: dict[str, Any] = {}
    routes = []
    for name, fake in fakes.items():
        if fake.kind == "vllm":
            providers[name] = {"kind": "vllm", "endpoints": [fake.base_url]}
        else:
            providers[name] = {"kind": fake.kind, "base_url": fake.base_url, "api_key": fake.api_key}
        routes.append({"provider": name, "model": fake.models[0]})
    config = parse_config({"providers": providers, "models": {"m": {"routes": routes}},
                           "routing": {"models_poll_s": models_poll_s, "metrics_poll_s": 0.1,
                                       "metrics_timeout_s": metrics_timeout_s}}, {})
    router = Router(config)
    return router, Signals(config, router)


async def test_poller_scrapes_waiting_running_and_kv_cache_from_a_vllm_server() -> None:
    with FakeProvider("vllm", max_running=1, ttft_s=1.0) as fake:
        router, signals = build({"pool": fake})
        endpoint = router.endpoints["pool"][0]
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
        try:
            async with aiohttp.ClientSession() as session:
                busy = [asyncio.create_task(session.post(fake.base_url + "/chat/completions", json=body))
                        for _ in range(3)]
                await fake.await_until(lambda: fake.running == 1 and fake.waiting == 2)
                await signals.poll_once()
                assert (endpoint.running, endpoint.waiting, endpoint.kv_cache_usage) == (1.0, 2.0, 1.0)
                assert endpoint.healthy and endpoint.scraped_at is not None
                for task in busy:
                    task.cancel()
                await asyncio.gather(*busy, return_exceptions=True)
        finally:
            await signals.stop()
        assert {p.path for p in fake.probes} == {"/health", "/metrics"}


async def test_failed_health_probe_takes_a_member_out_and_a_passing_one_brings_it_back() -> None:
    with FakeProvider("vllm") as fake:
        router, signals = build({"pool": fake})
        endpoint = router.endpoints["pool"][0]
        try:
            fake.kill_engine()
            await signals.poll_once()
            assert not endpoint.healthy and endpoint.waiting is None
            fake.revive_engine()
            await signals.poll_once()
            assert endpoint.healthy and endpoint.waiting == 0.0
        finally:
            await signals.stop()


async def test_a_member_too_busy_to_answer_its_metrics_has_no_room_until_it_answers() -> None:
    with FakeProvider("vllm") as fake:
        router, signals = build({"pool": fake}, metrics_timeout_s=0.2)
        route, endpoint = router.routes["m"][0], router.endpoints["pool"][0]
        try:
            await signals.poll_once()
            assert route.has_room(endpoint) and not endpoint.busy
            fake.metrics_delay_s = 1.0
            await signals.poll_once()
            assert endpoint.busy and not route.has_room(endpoint) and endpoint.healthy
            assert router.describe()["m"]["routes"][0]["endpoints"][0]["busy"] is True
            fake.metrics_delay_s = 0.0
            await signals.poll_once()
            assert route.has_room(endpoint) and not endpoint.busy
        finally:
            await signals.stop()


async def test_a_server_that_is_gone_is_down() -> None:
    fake = FakeProvider("vllm").start()
    router, signals = build({"pool": fake})
    fake.stop()
    try:
        await signals.poll_once()
        assert not router.endpoints["pool"][0].healthy
    finally:
        await signals.stop()


async def test_model_list_poll_takes_out_a_route_whose_model_the_provider_does_not_list() -> None:
    with FakeProvider("deepinfra") as fake:
        router, signals = build({"di": fake})
        endpoint = router.endpoints["di"][0]
        try:
            await signals.poll_once()
            assert endpoint.models == frozenset(fake.models)
            assert router.routes["m"][0].usable(0, 0.0)
            fake.models = ["something-else"]
            await signals.poll_once()
            assert not router.routes["m"][0].usable(0, 0.0)
        finally:
            await signals.stop()


@pytest.mark.parametrize("kind", ["vllm", "novita", "deepinfra"])
async def test_a_providers_published_context_window_bounds_its_route(kind: str) -> None:
    with FakeProvider(kind, max_model_len=32768, price_in_per_mtok=0.27, price_out_per_mtok=0.85) as fake:
        router, signals = build({"p": fake})
        route = router.routes["m"][0]
        assert route.window() is None  # unknown until the provider says
        try:
            await signals.poll_once()
        finally:
            await signals.stop()
        assert route.window() == 32768
        card = route.published()
        if kind == "vllm":  # vLLM publishes no price: nothing to compare
            assert not card.priced and not route.price_differs()
        else:  # Novita's units of 1/10,000 USD read as USD, exactly
            assert (card.input_per_mtok_nano, card.output_per_mtok_nano) == (270_000_000, 850_000_000)
            assert route.price_differs()  # the route configures no price
            shown = router.describe()["m"]["routes"][0]
            assert shown["published"]["price_per_mtok_usd"] == {"input": 0.27, "output": 0.85}
            assert shown["price_differs"] and shown["context_window"] == 32768


def test_parse_cards_reads_each_providers_names_and_refuses_nonsense() -> None:
    cards = parse_cards(b'{"data": [{"id": "a", "max_model_len": 4096}, {"id": "b", "context_size": -1, '
                        b'"input_token_price_per_m": "free"}, {"id": "c", "metadata": {"context_length": true, '
                        b'"max_tokens": 2048, "pricing": {"input_tokens": 0.13, "output_tokens": -1}}}]}')
    assert cards["a"].context_window == 4096
    assert cards["b"].context_window is None and cards["b"].input_per_mtok_nano is None
    assert cards["c"].context_window is None and cards["c"].max_output_tokens == 2048
    assert cards["c"].input_per_mtok_nano == 130_000_000 and not cards["c"].priced


async def test_a_failed_model_poll_keeps_the_last_list() -> None:
    with FakeProvider("novita") as fake:
        router, signals = build({"nv": fake})
        endpoint = router.endpoints["nv"][0]
        try:
            await signals.poll_once()
            known = endpoint.models
            assert known is not None
            fake.api_key = "rotated"  # the poll now gets 401
            await signals.poll_once()
            assert endpoint.models == known
        finally:
            await signals.stop()


async def test_pollers_run_on_their_own_timers_once_started() -> None:
    with FakeProvider("vllm") as fake:
        router, signals = build({"pool": fake}, models_poll_s=0)
        await signals.start()
        try:
            await fake.await_until(lambda: sum(p.path == "/metrics" for p in fake.probes) >= 3, timeout=3)
            fake.kill_engine()
            await fake.await_until(lambda: not router.endpoints["pool"][0].healthy, timeout=3)
        finally:
            await signals.stop()
        assert not [r for r in fake.requests if r.path.endswith("/models")]  # models_poll_s: 0 is off
        seen = len(fake.probes)
        await keeps_holding(lambda: len(fake.probes) == seen, 0.3, "no probe after stop")  # stopped means stopped


@pytest.mark.parametrize("kind", ["openai", "vllm"])
async def test_start_waits_for_a_first_round_so_the_first_request_already_knows(kind: str) -> None:
    with FakeProvider(kind) as fake:
        router, signals = build({"p": fake})
        await signals.start()
        try:
            assert router.endpoints["p"][0].models == frozenset(fake.models)
        finally:
            await signals.stop()
