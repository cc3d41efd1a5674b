"""The router: which of a model's routes a request tries, in which order, and what it learns back.

Ranking, for every strategy: a vLLM pool with room first (its hours are paid anyway);
then the per-token routes by the strategy's score, those slower than `max_ttft_s` last
among them; then a full pool, where a request would queue; then routes cooling down
after a 429. Unusable routes (circuit open or probing, model not listed, every endpoint
down) are left out; when that leaves none, the request gets 503 with a Retry-After.
Scores, with c = the request's estimated cost in USD and t = its expected latency in
seconds (EWMA time to first token + EWMA time per token x expected output tokens):
  cost      c, then t          latency   t, then c          ordered   the config order
  balanced  weights.cost x c + weights.latency x usd_per_second x t
Everything is read from memory; nothing here waits on the network or logs per request.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from typing import Any

from gateway.call import Call
from gateway.config import Config, ModelConfig
from gateway.errors import GatewayError
from gateway.money import NANO_PER_USD, nano_to_usd
from gateway.redact import without_credentials
from gateway.routing.eligibility import BYTES_PER_TOKEN, eligible
from gateway.routing.health import OPEN
from gateway.routing.route import Endpoint, Route

TYPICAL_OUTPUT_TOKENS = 256  # answers are usually far shorter than max_tokens; rank by a typical one
NOMINAL_PROMPT_TOKENS = 1000  # the request /admin/routes ranks for
MAX_RETRY_AFTER_S = 3600.0  # a garbled Retry-After must not take a route out for longer


# One attempt a request may make: a route, and whether only a pool member with room will do.
Candidate = tuple[Route, bool]


class Router:
    """Ranks routes per request from in-memory signals, and takes feedback from every attempt.

    `routes` maps each public model to its Route objects in config order; `endpoints` maps
    each provider to its Endpoint objects. Both are what metrics and the pollers read.
    """

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic,
                 previous: Router | None = None, located: dict[str, str] | None = None) -> None:
        """`previous`: the router a reload replaces; `located`: providers' URLs known only now (mocks')."""
        self._config = config.routing
        self._clock = clock
        known = previous.endpoints if previous is not None else {}
        located = located or {}
        self.endpoints: dict[str, list[Endpoint]] = {
            name: _endpoints((located[name],) if name in located else p.base_urls, known.get(name, ()))
            for name, p in config.providers.items()}
        self.routes: dict[str, list[Route]] = {
            name: [Route(name, config.providers[r.provider], r, i, self.endpoints[r.provider],
                         config.routing) for i, r in enumerate(model.routes)]
            for name, model in config.models.items()}
        self.strategies: dict[str, str] = {
            name: model.strategy or config.routing.strategy for name, model in config.models.items()}
        if previous is not None:
            self._inherit(previous)

    def _inherit(self, previous: Router) -> None:
        """Keep what the previous router learnt of the routes that are still here (a reload).

        The state objects are shared, not copied: requests still running on the previous
        config report to them, and this router sees it. A changed breaker or latency
        setting starts that state afresh, since it is measured differently.
        """
        same_circuit = previous._config.circuit == self._config.circuit
        same_latency = previous._config.latency == self._config.latency
        for model, routes in self.routes.items():
            before = {(r.name, r.upstream_model): r for r in previous.routes.get(model, ())}
            for route in routes:
                old = before.get((route.name, route.upstream_model))
                if old is None:
                    continue
                if same_latency:
                    route.ttft, route.tpot = old.ttft, old.tpot
                if same_circuit:
                    circuits = {endpoint.url: circuit for endpoint, circuit in zip(old.endpoints, old.circuits)}
                    route.circuits = [circuits.get(e.url, c) for e, c in zip(route.endpoints, route.circuits)]

    def locate(self, provider: str, url: str) -> None:
        """Point a provider's single endpoint at `url`: the built-in mock's, known once its server listens."""
        (endpoint,) = self.endpoints[provider]
        endpoint.url, endpoint.origin = url, url.removesuffix("/v1")

    # --- ranking -----------------------------------------------------------------------

    def plan(self, model: ModelConfig, call: Call, route_header: str | None = None) -> list[Candidate]:
        """The attempts this request may make, best first; 503 when no route can serve now."""
        routes = eligible(model.name, self.routes[model.name], call, route_header)
        prompt = -(-call.prompt_tokens_bound // BYTES_PER_TOKEN)
        now = self._clock()
        output = 0 if not call.generates else min(call.max_tokens or TYPICAL_OUTPUT_TOKENS,
                                                                TYPICAL_OUTPUT_TOKENS) * call.n
        ranked = self._rank(routes, self.strategies[model.name], prompt, output, now)
        if not ranked:
            raise self._unavailable(model.name, routes, now)
        candidates: list[Candidate] = []
        last_resort: list[Candidate] = []
        for _, route, usable, roomy in ranked:
            candidates.append((route, roomy))
            if route.is_pool:
                if usable > 1:  # a second member of the same pool is worth a try before leaving it
                    candidates.append((route, roomy))
                if roomy:
                    last_resort.append((route, False))  # queue there if every other route fails
        return candidates + last_resort if last_resort else candidates

    def _rank(self, routes: list[Route], strategy: str, prompt: int, output: int,
              now: float) -> list[tuple[tuple, Route, int, bool]]:
        """(sort key, route, usable endpoints, has room) of every usable route, best first."""
        c = self._config
        max_ttft, usd_per_latency_s = c.max_ttft_s, c.weights.latency * c.usd_per_second
        usd_per_cost_nano = c.weights.cost / NANO_PER_USD
        ranked = []
        for route in routes:
            usable = fresh = 0
            roomy = False
            for i, endpoint in enumerate(route.endpoints):
                if not route.usable(i, now):
                    continue
                usable += 1
                if route.circuits[i].cooling(now):
                    continue
                fresh += 1
                roomy = roomy or (route.is_pool and route.has_room(endpoint))
            if not usable:
                continue
            tier = 0 if roomy else 3 if not fresh else 2 if route.is_pool else 1
            ttft = route.ttft.get(now) or 0.0  # unknown counts as fast, so a new route gets measured
            latency = ttft + (route.tpot.get(now) or 0.0) * output
            cost = 0 if roomy else route.cost_nano(prompt, output)
            slow = tier != 0 and strategy != "ordered" and 0 < max_ttft < ttft
            if strategy == "cost":
                key: tuple = (tier, slow, cost, latency, route.index)
            elif strategy == "latency":
                key = (tier, slow, latency, cost, route.index)
            elif strategy == "ordered":
                key = (tier, slow, route.index)
            else:
                key = (tier, slow, usd_per_cost_nano * cost + usd_per_latency_s * latency, route.index)
            ranked.append((key, route, usable, roomy))
        ranked.sort(key=_first)
        return ranked

    # --- feedback from the request path ------------------------------------------------

    def begin(self, route: Route, avoid: list[Endpoint], room_only: bool = False) -> Endpoint | None:
        """Choose the endpoint for one attempt and count it in flight; None when none will do now."""
        now = self._clock()
        i = route.pick(now, avoid, room_only)
        if i is None:
            return None
        route.circuits[i].take(now)
        endpoint = route.endpoints[i]
        endpoint.inflight += 1
        return endpoint

    def opened(self, route: Route, endpoint: Endpoint, *, started: float, first_byte_at: float,
               stream: bool) -> None:
        """The upstream answered 200: the route works; a stream's first byte times its TTFT."""
        now = self._clock()
        route.circuits[route.endpoints.index(endpoint)].success(now)
        if stream:
            route.ttft.add(first_byte_at - started, now)

    def failed(self, route: Route, endpoint: Endpoint, error: GatewayError) -> None:
        """An attempt failed before its first byte: 429 cools the route down, 5xx counts against it."""
        endpoint.inflight -= 1
        now = self._clock()
        circuit = route.circuits[route.endpoints.index(endpoint)]
        if error.status == 429:
            circuit.cool_down(now, self._retry_after(error.headers.get("retry-after")))
        elif error.status >= 500:  # includes timeouts, refused connections, and a provider refusing our key
            circuit.failure(now)
            if route.is_pool and error.code == "upstream_unreachable":
                endpoint.healthy = False  # the server is gone; the next passing /health probe brings it back
        else:
            circuit.release()  # the request's own fault, not the route's

    def release(self, route: Route, endpoint: Endpoint) -> None:
        """An attempt abandoned without an answer (the request was cancelled)."""
        endpoint.inflight -= 1
        route.circuits[route.endpoints.index(endpoint)].release()

    def end(self, route: Route, endpoint: Endpoint, *, status: int, started: float, first_byte_at: float,
            ended_at: float, completion_tokens: int, stream: bool) -> None:
        """An answered attempt is over: what it took per token, or that its stream broke."""
        endpoint.inflight -= 1
        now = self._clock()
        if stream:
            if status == 200 and completion_tokens > 1:
                route.tpot.add((ended_at - first_byte_at) / (completion_tokens - 1), now)
            elif status >= 500:
                route.circuits[route.endpoints.index(endpoint)].failure(now)
            return
        # A whole body tells only the total; what the known per-token time does not explain is TTFT.
        total = first_byte_at - started
        tpot = route.tpot.get(now)
        if tpot is not None and completion_tokens > 1:
            total -= tpot * (completion_tokens - 1)
        route.ttft.add(max(total, 0.0), now)

    def _retry_after(self, header: str | None) -> float:
        if header:
            try:
                seconds = float(header)
            except ValueError:
                try:
                    seconds = email.utils.parsedate_to_datetime(header).timestamp() - time.time()
                except (TypeError, ValueError):
                    seconds = self._config.rate_limit_cooldown_s
            if math.isfinite(seconds):
                return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
        return self._config.rate_limit_cooldown_s

    # --- explaining -------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Every model's routes with their signals and their rank for a nominal request."""
        now = self._clock()
        out: dict[str, Any] = {}
        for model, routes in self.routes.items():
            strategy = self.strategies[model]
            ranked = self._rank(routes, strategy, NOMINAL_PROMPT_TOKENS, TYPICAL_OUTPUT_TOKENS, now)
            rank = {id(route): (i, key, roomy) for i, (key, route, _, roomy) in enumerate(ranked)}
            docs = []
            for route in sorted(routes, key=lambda r: rank.get(id(r), (len(routes) + r.index,))[0]):
                i, key, roomy = rank.get(id(route), (None, None, False))
                docs.append(self._describe_route(route, i, key, roomy, strategy, now))
            out[model] = {"strategy": strategy, "nominal_request": {
                "prompt_tokens": NOMINAL_PROMPT_TOKENS, "output_tokens": TYPICAL_OUTPUT_TOKENS},
                "routes": docs}
        return out

    def _describe_route(self, route: Route, rank: int | None, key: tuple | None, roomy: bool, strategy: str,
                        now: float) -> dict[str, Any]:
        price = route.price
        hourly = route.provider.hourly_cost_nano
        ttft, tpot = route.ttft.get(now), route.tpot.get(now)
        if rank is None:
            why = "; ".join(sorted({self._why_not(route, i, now) for i in range(len(route.endpoints))}))
        else:
            why = ("pool with room", "per-token", "pool is full", "cooling down after 429")[key[0]] + (
                ", slower than max_ttft_s" if key[1] else "")
        return {
            "rank": rank, "provider": route.name, "kind": route.provider.kind, "pool": route.is_pool,
            "upstream_model": route.upstream_model, "available": rank is not None, "why": why,
            "score": key[2] if key is not None and strategy == "balanced" else None,
            "estimated_cost_usd": nano_to_usd(0 if roomy else route.cost_nano(NOMINAL_PROMPT_TOKENS,
                                                                             TYPICAL_OUTPUT_TOKENS)),
            "price_per_mtok_usd": None if price is None else {
                "input": nano_to_usd(price.input_per_mtok_nano), "output": nano_to_usd(price.output_per_mtok_nano)},
            "hourly_cost_usd": None if hourly is None else nano_to_usd(hourly),
            "published": _published(route), "price_differs": route.price_differs(),
            "context_window": route.window(), "max_output_tokens": route.output_limit(),
            "features": sorted(route.features),
            "ttft_s": ttft, "tpot_s": tpot, "latency_samples": route.ttft.samples,
            "expected_latency_s": (ttft or 0.0) + (tpot or 0.0) * TYPICAL_OUTPUT_TOKENS,
            "max_inflight": route.provider.max_inflight if route.is_pool else None,
            "max_waiting": route.provider.max_waiting if route.is_pool else None,
            "endpoints": [self._describe_endpoint(route, i, now) for i in range(len(route.endpoints))],
        }

    def _describe_endpoint(self, route: Route, i: int, now: float) -> dict[str, Any]:
        endpoint, circuit = route.endpoints[i], route.circuits[i]
        total, errors = circuit.window(now)
        return {
            "url": without_credentials(endpoint.url), "usable": route.usable(i, now), "healthy": endpoint.healthy,
            "inflight": endpoint.inflight, "waiting": endpoint.waiting, "running": endpoint.running,
            "kv_cache_usage": endpoint.kv_cache_usage, "queue_estimate": endpoint.queue(),
            "room": route.has_room(endpoint) if route.is_pool else None,
            "scrape_age_s": None if endpoint.scraped_at is None else round(now - endpoint.scraped_at, 3),
            "busy": endpoint.busy,
            "model_listed": None if endpoint.models is None else route.upstream_model in endpoint.models,
            "circuit": {"state": circuit.state, "consecutive_failures": circuit.consecutive,
                        "window_requests": total, "window_failures": errors,
                        "reopen_in_s": max(circuit.reopen_at - now, 0.0) if circuit.state == OPEN else None,
                        "cooldown_in_s": max(circuit.cool_until - now, 0.0) or None},
        }

    def _why_not(self, route: Route, i: int, now: float) -> str:
        endpoint, circuit = route.endpoints[i], route.circuits[i]
        if not endpoint.healthy:
            return "endpoint down"
        if endpoint.models is not None and route.upstream_model not in endpoint.models:
            return "model not listed by the provider"
        if circuit.state == OPEN:
            return "circuit open"
        return "probe in flight"

    def _ready_in(self, route: Route, i: int, now: float) -> float:
        """Seconds until endpoint `i` might take this route's requests again."""
        endpoint, circuit = route.endpoints[i], route.circuits[i]
        if not endpoint.healthy:
            return self._config.metrics_poll_s
        if endpoint.models is not None and route.upstream_model not in endpoint.models:
            return self._config.models_poll_s
        return max(circuit.reopen_at - now, 0.0) if circuit.state == OPEN else 0.0

    def _unavailable(self, model: str, routes: list[Route], now: float) -> GatewayError:
        reasons = ", ".join(f"{r.name}: " + "; ".join(sorted({self._why_not(r, i, now)
                                                              for i in range(len(r.endpoints))})) for r in routes)
        wait = min((self._ready_in(r, i, now) for r in routes for i in range(len(r.endpoints))), default=1.0)
        return GatewayError(503, f"no route of model '{model}' can serve right now ({reasons})",
                            type="service_unavailable", code="no_route_available",
                            headers={"retry-after": str(max(1, math.ceil(wait)))})


def _published(route: Route) -> dict[str, Any] | None:
    """What the provider's /models says of the route's model, beside what config says."""
    card = route.published()
    if card is None:
        return None
    return {"context_window": card.context_window, "max_output_tokens": card.max_output_tokens,
            "price_per_mtok_usd": {"input": nano_to_usd(card.input_per_mtok_nano),
                                   "output": nano_to_usd(card.output_per_mtok_nano)} if card.priced else None}


def _endpoints(urls: tuple[str, ...], known: list[Endpoint] | tuple) -> list[Endpoint]:
    """Endpoints for `urls`: the known one where the URL is the same (its load, health, models go on)."""
    by_url = {endpoint.url: endpoint for endpoint in known}
    return [by_url.get(url) or Endpoint(url) for url in urls]


def _first(entry: tuple) -> tuple:
    return entry[0]
