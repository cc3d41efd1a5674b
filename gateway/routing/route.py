"""Routes and endpoints: the router's in-memory picture of every way to serve a model.

Everything here is plain attributes, written by the request path (in-flight counts,
circuits, latencies) and by the background pollers (scraped load, health, model lists),
and read without I/O by the router, /admin/routes and metrics.
"""

from __future__ import annotations

import random

from gateway.config import Price, ProviderConfig, RouteConfig, RoutingConfig
from gateway.money import token_cost
from gateway.routing.health import Circuit, Ewma


class Endpoint:
    """One base URL of a provider: the single one of a cloud API, or one member of a pool.

    Shared by every route through that provider. Attributes:
      url             the OpenAI base URL (`http://gpu-1:8000/v1`)
      origin          where a vLLM server's /health and /metrics live (the URL without `/v1`)
      inflight        this process's requests sent here and not yet finished
      healthy         False after a failed /health probe or a refused connection, until a probe passes
      waiting, running, kv_cache_usage
                      vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc
                      (0..1) from the last /metrics scrape, summed over models; None before one
      scraped_at      monotonic time of that scrape
      busy            the last /metrics scrape got no answer in time: a server that cannot answer its own
                      metrics is too loaded to take more (a saturated CPU server, an overloaded API process)
      inflight_at_scrape
                      `inflight` when that scrape arrived (see `queue`)
      models          ids from the last /v1/models poll; None while not known (never held against it)
      max_inflight    this endpoint's own cap on `inflight`, set by whoever knows its size (a dedicated
                      service's watcher: instances x per-instance cap); None: the provider's max_inflight
    """

    __slots__ = ("url", "origin", "inflight", "healthy", "waiting", "running", "kv_cache_usage",
                 "scraped_at", "busy", "inflight_at_scrape", "models", "max_inflight")

    def __init__(self, url: str) -> None:
        self.url = url
        self.origin = url[:-3] if url.endswith("/v1") else url
        self.inflight = 0
        self.healthy = True
        self.waiting: float | None = None
        self.running: float | None = None
        self.kv_cache_usage: float | None = None
        self.scraped_at: float | None = None
        self.busy = False
        self.inflight_at_scrape = 0
        self.models: frozenset[str] | None = None
        self.max_inflight: int | None = None

    def queue(self) -> float:
        """Requests waiting at this server now, as best known.

        The scrape is seconds old; what this process sent or finished since is fresher. A
        server that was queueing at the scrape queues every request sent since, and each
        one finished since lets one waiting request start. A server that was not queueing
        is taken at its word until the next scrape (in-flight is bounded by max_inflight).
        """
        waiting = self.waiting
        if not waiting:
            return 0.0
        return max(0.0, waiting + self.inflight - self.inflight_at_scrape)

    def load(self) -> float:
        return self.inflight + self.queue()


class Route:
    """A public model served by one provider, and what the router knows of it.

    Attributes:
      model, provider, upstream_model, price, context_window, part_tokens
                      from config (`price` None: nothing per token; `context_window` None: unknown)
      index           position in the model's config list (the `ordered` strategy's rank)
      is_pool         a self-hosted vLLM pool: first while it has room, whatever the strategy
      endpoints       its endpoints; `circuits[i]` is this route's breaker at `endpoints[i]`
      ttft, tpot      EWMAs of time to first token and of time per output token, seconds
    """

    __slots__ = ("model", "provider", "upstream_model", "price", "index", "is_pool", "endpoints",
                 "circuits", "ttft", "tpot", "context_window", "part_tokens")

    def __init__(self, model: str, provider: ProviderConfig, config: RouteConfig, index: int,
                 endpoints: list[Endpoint], routing: RoutingConfig) -> None:
        self.model = model
        self.provider = provider
        self.upstream_model = config.model
        self.price: Price | None = config.price
        self.context_window = config.context_window
        self.part_tokens = config.part_tokens or routing.part_tokens
        self.index = index
        self.is_pool = provider.is_pool
        self.endpoints = endpoints
        self.circuits = [Circuit(routing.circuit) for _ in endpoints]
        latency = routing.latency
        self.ttft = Ewma(latency.alpha, latency.forget_after_s)
        self.tpot = Ewma(latency.alpha, latency.forget_after_s)

    @property
    def name(self) -> str:
        return self.provider.name

    def usable(self, i: int, now: float) -> bool:
        """Whether endpoint `i` may take a request of this route now."""
        endpoint = self.endpoints[i]
        return (endpoint.healthy and self.circuits[i].admits(now)
                and (endpoint.models is None or self.upstream_model in endpoint.models))

    def has_room(self, endpoint: Endpoint) -> bool:
        """A pool member has room while it answers its metrics, its queue is short and this process's
        in-flight is under the cap."""
        cap = self.provider.max_inflight if endpoint.max_inflight is None else endpoint.max_inflight
        return not endpoint.busy and endpoint.inflight < cap and endpoint.queue() < self.provider.max_waiting

    def pick(self, now: float, avoid: list[Endpoint], room_only: bool) -> int | None:
        """Index of the endpoint to send to: least load of two random usable ones (power of two choices).

        Members not cooling down after a 429 are preferred, then pool members with room;
        `room_only` refuses members without room.
        """
        usable = [i for i in range(len(self.endpoints))
                  if self.endpoints[i] not in avoid and self.usable(i, now)]
        usable = [i for i in usable if not self.circuits[i].cooling(now)] or usable
        if self.is_pool:
            roomy = [i for i in usable if self.has_room(self.endpoints[i])]
            if roomy or room_only:
                usable = roomy
        if len(usable) <= 1:
            return usable[0] if usable else None
        a, b = random.sample(usable, 2)
        return a if self.endpoints[a].load() <= self.endpoints[b].load() else b

    def cost_nano(self, prompt_tokens: int, output_tokens: int) -> int:
        """What a request of this size costs here per token (a pool's hours are paid anyway)."""
        if self.price is None:
            return 0
        return (token_cost(prompt_tokens, self.price.input_per_mtok_nano)
                + token_cost(output_tokens, self.price.output_per_mtok_nano))
