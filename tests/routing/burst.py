"""A burst above a pool's capacity, routed by the gateway and by two naive baselines.

Everything is a loopback fake: a pool of vLLM servers with a fixed number of slots each
(paid by the hour, so free per token), a cheap per-token provider that is slow to start,
and a fast one that costs more. Each scenario gets a fresh gateway process, the same
open-loop arrivals, and streams; a request's time to first token is what its client
sees from sending to the first byte of the answer. Baselines are the same gateway with
each request pinned to one route by `x-gateway-route`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
import orjson

from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess


@dataclass(frozen=True)
class Setup:
    members: int = 2  # pool servers
    slots: int = 4  # concurrent requests one pool server runs; more wait in its queue
    pool_ttft_s: float = 0.15
    pool_token_s: float = 0.02
    hourly_cost_usd: float = 4.0  # the pool's, for the whole pool
    cheap: tuple[float, float, float, float] = (0.05, 0.10, 0.35, 0.01)  # USD/Mtok in, out; ttft, s/token
    fast: tuple[float, float, float, float] = (0.30, 0.90, 0.08, 0.005)
    answer_tokens: int = 32
    prompt_words: int = 200


Pin = Callable[[int], "str | None"]  # request index -> the one route to use, or None to let the router choose

SCENARIOS: dict[str, tuple[str, Pin]] = {
    "gateway routing (balanced)": ("balanced", lambda i: None),
    "gateway routing (latency)": ("latency", lambda i: None),
    "always cheapest (the pool: free per token)": ("balanced", lambda i: "pool"),
    "always cheapest per-token provider": ("balanced", lambda i: "cheap"),
    "round-robin over the three routes": ("balanced", lambda i: ("pool", "cheap", "fast")[i % 3]),
}


@dataclass(frozen=True)
class Row:
    scenario: str
    requests: int
    errors: int
    served: dict[str, int]
    pool_share: float
    cost_usd: float  # per-token spend, as the providers bill it
    ttft_p50_s: float
    ttft_p95_s: float
    seconds: float  # from the first arrival to the last answer


@contextmanager
def providers(setup: Setup) -> Iterator[dict[str, FakeProvider | list[FakeProvider]]]:
    pool = [FakeProvider("vllm", models=["m"], max_running=setup.slots, ttft_s=setup.pool_ttft_s,
                         token_delay_s=setup.pool_token_s, completion_tokens=setup.answer_tokens).start()
            for _ in range(setup.members)]
    paid = {name: FakeProvider(kind, models=["m"], price_in_per_mtok=spec[0], price_out_per_mtok=spec[1],
                               ttft_s=spec[2], token_delay_s=spec[3], completion_tokens=setup.answer_tokens).start()
            for name, kind, spec in (("cheap", "deepinfra", setup.cheap), ("fast", "openai", setup.fast))}
    try:
        yield {"pool": pool, **paid}
    finally:
        for fake in [*pool, *paid.values()]:
            fake.stop()


def gateway_config(setup: Setup, fakes: dict, strategy: str) -> dict:
    pool = fakes["pool"]
    return {
        "providers": {
            "pool": {"kind": "vllm", "endpoints": [f.base_url for f in pool], "max_inflight": setup.slots,
                     "max_waiting": 1, "hourly_cost_usd": setup.hourly_cost_usd},
            "cheap": {"kind": "deepinfra", "base_url": fakes["cheap"].base_url, "api_key": fakes["cheap"].api_key},
            "fast": {"kind": "openai", "base_url": fakes["fast"].base_url, "api_key": fakes["fast"].api_key},
        },
        "models": {"m": {"strategy": strategy, "routes": [
            {"provider": "pool", "model": "m"},
            {"provider": "cheap", "model": "m",
             "price": {"input_per_mtok": setup.cheap[0], "output_per_mtok": setup.cheap[1]}},
            {"provider": "fast", "model": "m",
             "price": {"input_per_mtok": setup.fast[0], "output_per_mtok": setup.fast[1]}}]}},
        "routing": {"metrics_poll_s": 0.5},
    }


async def _fire(url: str, body: bytes, requests: int, rate: float, pin: Pin) -> list[tuple[str, float] | None]:
    """Open-loop arrivals at `rate` per second; (provider, ttft) of each, None for an error."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(i: int, at: float) -> tuple[str, float] | None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            headers = {"content-type": "application/json"}
            route = pin(i)
            if route:
                headers["x-gateway-route"] = route
            sent = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        return None
                    await response.content.readany()
                    ttft = time.monotonic() - sent
                    rest = await response.read()
                    return (response.headers["x-gateway-provider"], ttft) if b"[DONE]" in rest else None
            except aiohttp.ClientError:
                return None
        start = time.monotonic() + 0.05
        return await asyncio.gather(*(one(i, start + i / rate) for i in range(requests)))


def run_scenario(name: str, setup: Setup, fakes: dict, requests: int, rate: float) -> Row:
    strategy, pin = SCENARIOS[name]
    everyone = [*fakes["pool"], fakes["cheap"], fakes["fast"]]
    for fake in everyone:
        fake.reset()
    body = orjson.dumps({"model": "m", "stream": True, "max_tokens": setup.answer_tokens,
                         "messages": [{"role": "user", "content": " ".join(["word"] * setup.prompt_words)}]})
    with GatewayProcess(gateway_config(setup, fakes, strategy)) as gw:
        started = time.monotonic()
        results = asyncio.run(_fire(gw.base_url + "/chat/completions", body, requests, rate, pin))
        seconds = time.monotonic() - started
    done = [r for r in results if r is not None]
    served = Counter(provider for provider, _ in done)
    ttfts = sorted(ttft for _, ttft in done)
    cost_nano = sum(bill.cost_usd_nano for fake in (fakes["cheap"], fakes["fast"]) for bill in fake.ledger)
    return Row(name, requests, requests - len(done), dict(served), served["pool"] / requests,
               cost_nano / 1e9, statistics.median(ttfts) if ttfts else 0.0, _p95(ttfts), seconds)


def run(setup: Setup, requests: int, rate: float, scenarios: list[str] | None = None) -> list[Row]:
    with providers(setup) as fakes:
        return [run_scenario(name, setup, fakes, requests, rate) for name in scenarios or list(SCENARIOS)]


def _p95(values: list[float]) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


def table(rows: list[Row]) -> str:
    lines = ["| scenario | served by the pool | per-token cost (USD) | cost per 1k requests (USD) | "
             "p50 TTFT | p95 TTFT | errors | served (pool / cheap / fast) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.pool_share:.0%} | {r.cost_usd:.6f} | {r.cost_usd * 1000 / r.requests:.4f} | "
                     f"{r.ttft_p50_s * 1000:.0f} ms | {r.ttft_p95_s * 1000:.0f} ms | {r.errors} | "
                     f"{r.served.get('pool', 0)} / {r.served.get('cheap', 0)} / {r.served.get('fast', 0)} |")
    return "\n".join(lines)
