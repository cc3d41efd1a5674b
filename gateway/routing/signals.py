"""Background pollers that keep the router's scraped signals fresh, off the request path.

Every vLLM pool member: GET /health and GET /metrics every `routing.metrics_poll_s`.
Every endpoint a route uses: GET <base URL>/models every `routing.models_poll_s` (0: never).
Results land on the Endpoint objects; the request path only ever reads them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.background import Periodic, stop_all
from gateway.config import Config, ProviderConfig
from gateway.routing.cards import parse_cards
from gateway.routing.route import Endpoint
from gateway.routing.router import Router
from gateway.upstream.client import request_headers

log = logging.getLogger("gateway.routing")

MODELS_TIMEOUT_S = 10.0
UNREACHABLE, TIMED_OUT = 0, -1  # statuses of a poll that got no answer
FIRST_ROUND_TIMEOUT_S = 3.0
_GAUGES = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv",
    "vllm:gpu_cache_usage_perc": "kv",  # the name before vLLM 0.10
}
_LOAD_PREFIXES = tuple(f"{prefix}{name}{end}" for name in _GAUGES for prefix, end in (("", "{"), ("", " "),
                                                                                      ("# TYPE ", " ")))


def parse_load(text: str) -> dict[str, float]:
    """vLLM's load gauges from Prometheus text: waiting and running summed over models, kv the highest.

    A page the parser refuses gives nothing: room is then judged by in-flight alone.
    """
    found: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(_load_lines(text)):
            field = _GAUGES.get(family.name)
            if field is None:
                continue
            for sample in family.samples:
                if sample.name != family.name:
                    continue
                value = sample.value
                found[field] = max(found.get(field, 0.0), value) if field == "kv" else found.get(field, 0.0) + value
    except ValueError:
        log.warning("a pool member's /metrics is not Prometheus text; its load is unknown until the next scrape")
        return {}
    return found


def _load_lines(text: str) -> str:
    """Only the lines of the gauges read: vLLM's page is about 50 KB, mostly histograms, and
    the parser takes 7 ms over all of it against 0.2 ms over these (bench/scrape.py)."""
    return "\n".join(line for line in text.splitlines() if line.startswith(_LOAD_PREFIXES))


class Signals:
    """Owns the poller tasks; `poll_once` runs one round of everything (tests, start-up)."""

    def __init__(self, config: Config, router: Router, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config.routing
        self._clock = clock
        used = {route.name for routes in router.routes.values() for route in routes}
        self._targets: list[tuple[ProviderConfig, Endpoint]] = [
            (config.providers[name], endpoint) for name in sorted(used) for endpoint in router.endpoints[name]]
        self._session: aiohttp.ClientSession | None = None
        self._loops: list[Periodic] = []

    async def start(self) -> None:
        """One round before serving (bounded, so a slow provider cannot hold start-up), then on a timer."""
        try:
            await asyncio.wait_for(self.poll_once(), FIRST_ROUND_TIMEOUT_S)
        except TimeoutError:
            log.warning("not every provider answered its first poll within %g s; polling on", FIRST_ROUND_TIMEOUT_S)
        for provider, endpoint in self._targets:
            if provider.profile.has_load_metrics:  # a vLLM server; a dedicated service's watcher is its probe
                self._loops.append(Periodic(f"load of {endpoint.url}", self._config.metrics_poll_s,
                                            functools.partial(self.poll_load, endpoint)))
            if self._config.models_poll_s > 0 and provider.profile.lists_models:
                self._loops.append(Periodic(f"models of {endpoint.url}", self._config.models_poll_s,
                                            functools.partial(self.poll_models, provider, endpoint)))
        for loop in self._loops:
            loop.start()

    async def stop(self) -> None:
        await stop_all(self._loops)
        self._loops.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def poll_once(self) -> None:
        jobs = []
        for provider, endpoint in self._targets:
            if provider.profile.has_load_metrics:
                jobs.append(self.poll_load(endpoint))
            if self._config.models_poll_s > 0 and provider.profile.lists_models:
                jobs.append(self.poll_models(provider, endpoint))
        await asyncio.gather(*jobs)

    async def poll_load(self, endpoint: Endpoint) -> None:
        """One /health and /metrics round for a pool member.

        A refused connection or an answer other than 200 takes the member out. A /metrics
        that times out marks it busy (no room, so no new requests) until one answers: a
        saturated server answers slowly, and the requests it has are already waiting. A
        slow /health changes nothing (the circuit breaker catches a server that stopped
        answering requests).
        """
        timeout_s = self._config.metrics_timeout_s
        (status, _), (metrics_status, body) = await asyncio.gather(
            self._get(endpoint.origin + "/health", {}, timeout_s),
            self._get(endpoint.origin + "/metrics", {}, timeout_s))
        if status != TIMED_OUT:  # a slow /health says nothing; its /metrics answer still counts
            healthy = status == 200
            if healthy != endpoint.healthy:
                log.warning("pool member %s is %s", endpoint.url, "back" if healthy else f"down (/health: {status})")
                endpoint.healthy = healthy
            if not healthy:
                endpoint.waiting = endpoint.running = endpoint.kv_cache_usage = None
                return
        if metrics_status == TIMED_OUT:
            if not endpoint.busy:
                log.warning("pool member %s is busy: /metrics took over %g s", endpoint.url, timeout_s)
            endpoint.busy = True
            return  # the last gauges stand; scrape_age in /admin/routes shows how old they are
        endpoint.busy = False
        load = parse_load(body.decode("utf-8", "replace")) if metrics_status == 200 else {}
        # Unknown gauges are None rather than stale: room is then judged by in-flight alone.
        endpoint.waiting = load.get("waiting")
        endpoint.running = load.get("running")
        endpoint.kv_cache_usage = load.get("kv")
        endpoint.inflight_at_scrape = endpoint.inflight  # what the server's answer already counts
        if load:
            endpoint.scraped_at = self._clock()

    async def poll_models(self, provider: ProviderConfig, endpoint: Endpoint) -> None:
        """One /models round; a failed poll keeps the last list known."""
        status, body = await self._get(endpoint.url + "/models", request_headers(provider), MODELS_TIMEOUT_S)
        cards = parse_cards(body, provider.profile.published_price_unit_usd) if status == 200 else None
        if cards is None:
            return
        models = frozenset(cards)
        if endpoint.models is not None and models != endpoint.models:
            log.info("provider %s at %s now lists %d models", provider.name, endpoint.url, len(models))
        endpoint.models = models
        endpoint.cards = cards

    async def _get(self, url: str, headers: dict[str, str], timeout_s: float) -> tuple[int, bytes]:
        """(status, body); status UNREACHABLE or TIMED_OUT when there was no answer."""
        if self._session is None:
            self._session = aiohttp.ClientSession(skip_auto_headers=("User-Agent",))
        try:
            async with self._session.get(url, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                return response.status, await response.read()
        except TimeoutError:
            return TIMED_OUT, b""
        except (aiohttp.ClientError, OSError):
            return UNREACHABLE, b""
