"""Routes and endpoints: the router's in-memory picture of every way to serve a model.

Everything here is plain attributes, written by the request path (in-flight counts,
circuits, latencies) and by the background pollers (scraped load, health, model lists),
and read without I/O by the router, /admin/routes and metrics.
"""

from __future__ import annotations

import random

from gateway.call import Call
from gateway.config import Price, ProviderConfig, RouteConfig, RoutingConfig
from gateway.money import token_cost
from gateway.routing.cards import ModelCard
from gateway.routing.health import Circuit, Ewma
from providers import features


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
      cards           what that poll said of each model (context window, output limit, price); None before one
      max_inflight    this endpoint's own cap on `inflight`, set by whoever knows its size (a dedicated
                      service's watcher: instances x per-instance cap); None: the provider's max_inflight
    """

    __slots__ = ("url", "origin", "inflight", "healthy", "waiting", "running", "kv_cache_usage",
                 "scraped_at", "busy", "inflight_at_scrape", "models", "cards", "max_inflight")

    def __init__(self, url: str) -> None:
        self.url = url
        self.origin = url.removesuffix("/v1")
        self.inflight = 0
        self.healthy = True
        self.waiting: float | None = None
        self.running: float | None = None
        self.kv_cache_usage: float | None = None
        self.scraped_at: float | None = None
        self.busy = False
        self.inflight_at_scrape = 0
        self.models: frozenset[str] | None = None
        self.cards: dict[str, ModelCard] | None = None
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
      model, provider, upstream_model, price, context_window, max_output_tokens, part_tokens
                      from config (`price` None: nothing per token; a limit None: what /models says, if any)
      features        what it honours, qualified ("chat.tools"): its provider's, with the route's capabilities
      index           position in the model's config list (the `ordered` strategy's rank)
      is_pool         a self-hosted vLLM pool: first while it has room, whatever the strategy
      endpoints       its endpoints; `circuits[i]` is this route's breaker at `endpoints[i]`
      ttft, tpot      EWMAs of time to first token and of time per output token, seconds
    """

    __slots__ = ("model", "provider", "upstream_model", "price", "index", "is_pool", "endpoints", "circuits",
                 "ttft", "tpot", "context_window", "max_output_tokens", "part_tokens", "features")

    def __init__(self, model: str, provider: ProviderConfig, config: RouteConfig, index: int,
                 endpoints: list[Endpoint], routing: RoutingConfig) -> None:
        self.model = model
        self.provider = provider
        self.upstream_model = config.model
        self.price: Price | None = config.price
        self.context_window = config.context_window
        self.max_output_tokens = config.max_output_tokens
        self.features = features.declared(provider.features, config.capabilities)
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

    def published(self) -> ModelCard | None:
        """What the provider's /models says of this route's model (the first endpoint that says)."""
        for endpoint in self.endpoints:
            if endpoint.cards is not None and (card := endpoint.cards.get(self.upstream_model)) is not None:
                return card
        return None

    def window(self) -> int | None:
        """The context window requests are bounded by: config's, else the provider's; None: unknown."""
        if self.context_window is not None:
            return self.context_window
        card = self.published()
        return card.context_window if card is not None else None

    def output_limit(self) -> int | None:
        if self.max_output_tokens is not None:
            return self.max_output_tokens
        card = self.published()
        return card.max_output_tokens if card is not None else None

    def price_differs(self) -> bool:
        """Whether the provider publishes a price for this model other than the configured one."""
        card = self.published()
        if card is None or not card.priced:
            return False
        price = self.price
        configured = (price.input_per_mtok_nano, price.output_per_mtok_nano) if price else (0, 0)
        return configured != (card.input_per_mtok_nano, card.output_per_mtok_nano)

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

    def prompt_bound(self, call: Call) -> int:
        """The most tokens `call`'s prompt counts here, its media parts at this route's bounds."""
        return call.prompt_bound(self.part_tokens)

    def worst_case(self, call: Call) -> tuple[int, int]:
        """(tokens, cost in nano-dollars) `call` can use here at most: over every prompt size p up to
        its bound, p tokens in and, per choice, min(max_tokens, the model's output limit, window - p)."""
        prompt = self.prompt_bound(call)
        price = self.price
        in_nano, out_nano = (price.input_per_mtok_nano, price.output_per_mtok_nano) if price else (0, 0)
        if not call.generates:
            return prompt, token_cost(prompt, in_nano)
        window = self.window()
        limit = call.max_tokens if call.max_tokens is not None else (call.blind_max_tokens if window is None else None)
        if (model_limit := self.output_limit()) is not None:
            limit = model_limit if limit is None else min(limit, model_limit)
        if window is None:
            output = (limit or 0) * call.n
            return prompt + output, token_cost(prompt, in_nano) + token_cost(output, out_nano)
        # Both totals are piecewise linear in p, so their maxima are at the ends or at the bend.
        top = min(prompt, window)
        bend = window - limit if limit is not None else 0
        tokens = cost = 0
        for p in {0, top, min(max(bend, 0), top)}:
            per_choice = window - p if limit is None else min(limit, window - p)
            output = max(per_choice, 0) * call.n
            tokens = max(tokens, p + output)
            cost = max(cost, token_cost(p, in_nano) + token_cost(output, out_nano))
        return tokens, cost
