"""Prometheus metrics of the gateway: spend, traffic, latency, routing state and the store.

Labels are team, model, provider, endpoint and status class, plus three small fixed sets
(an upstream failure's reason, a budget's period, a store operation): never a key, a
user or a request id. A request changes metrics once, at settlement, through children
cached by their label values; state that lives elsewhere (routes, pools, budgets) is
copied into gauges by `gateway.observability.gauges` every few seconds.

With PROMETHEUS_MULTIPROC_DIR set (`gateway serve` sets it for several workers) every
value lives in files shared by the workers, and /metrics merges them: counters and
histograms summed, each gauge as its `multiprocess_mode` says. Counters and histograms
are then buffered in memory and written to the files every half second
(`gateway.observability.buffered`): another worker's figures in a scrape lag by that much.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from gateway.accounting.settlement import Outcome
from gateway.background import Periodic
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.observability import buffered
from gateway.observability.store_timing import STORE_OPERATIONS, MeteredStore
from gateway.store import Store, UsageRecord

NO_PROVIDER = "none"  # the provider label of a request no upstream answered
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# LLM answers take from milliseconds (embeddings, cached) to minutes (long generations).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# What the gateway adds should stay around a millisecond; the upper buckets catch stalls.
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# The reason label of an upstream failure, from the GatewayError the attempt raised.
_REASON_BY_CODE = {"upstream_timeout": "timeout", "upstream_unreachable": "unreachable",
                   "upstream_failed": "connection", "upstream_auth_failed": "auth",
                   "upstream_invalid_response": "invalid_response", "upstream_redirect": "invalid_response",
                   "upstream_response_too_large": "too_large"}
UPSTREAM_REASONS = ("timeout", "unreachable", "connection", "auth", "rate_limited", "server_error",
                    "client_error", "invalid_response", "too_large", "stream_timeout", "stream_broken")
ESTIMATE_REASONS = ("absent", "invalid")


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def failure_reason(error: GatewayError) -> str:
    """One of UPSTREAM_REASONS: why an attempt failed before its first byte."""
    reason = _REASON_BY_CODE.get(error.code or "")
    if reason is not None:
        return reason
    if error.status == 429:
        return "rate_limited"
    return "server_error" if error.status >= 500 else "client_error"


class _Served:
    """The children one (team, model, provider, status) combination updates at settlement."""

    __slots__ = ("requests", "prompt_tokens", "completion_tokens", "cost", "duration", "ttft", "overhead",
                 "retries", "fallbacks", "pool_share", "stream_errors")

    def __init__(self, m: Metrics, team: str, model: str, provider: str, status: int) -> None:
        self.requests = m.requests.labels(team, model, provider, status_class(status))
        self.prompt_tokens = m.prompt_tokens.labels(team, model, provider)
        self.completion_tokens = m.completion_tokens.labels(team, model, provider)
        self.cost = m.cost.labels(team, model, provider)
        self.duration = m.duration.labels(model, provider)
        answered = provider != NO_PROVIDER
        self.ttft = m.ttft.labels(model, provider) if answered else None
        self.overhead = m.overhead.labels(model, provider) if answered else None
        self.retries = m.retries.labels(model, provider)
        self.fallbacks = m.fallbacks.labels(model, provider) if answered else None
        self.pool_share = m.pool_counter(model, provider)
        # A stream that broke after its first byte: the status is the only trace of the upstream's failure.
        self.stream_errors = None
        if answered and status in (502, 504):
            reason = "stream_timeout" if status == 504 else "stream_broken"
            self.stream_errors = m.upstream_errors.labels(provider, reason)


class Metrics:
    """Every metric family of one gateway process, and the hooks of the request path that feed them."""

    def __init__(self, config: Config | None = None, registry: CollectorRegistry | None = None) -> None:
        config = self._config = config or Config()
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # Before any family is made: their series take the buffered values.
        self._buffer = buffered.install() if self.multiprocess else None
        self._flusher = Periodic("metrics flush", buffered.FLUSH_S, self._flush_round)
        disable_created_metrics()  # `_created` series double the exposition and no dashboard reads them
        self.registry = registry or CollectorRegistry()
        r = self.registry
        by_request = ["team", "model", "provider"]
        by_route = ["model", "provider"]

        self.requests = Counter("gateway_requests_total", "Requests settled, by the status the client saw",
                                [*by_request, "status_class"], registry=r)
        self.refusals = Counter("gateway_refused_requests_total",
                                "Requests refused before any upstream call: key, body, model, rate limit, budget", ["status_class"],
                                registry=r)
        self.prompt_tokens = Counter("gateway_prompt_tokens_total", "Prompt tokens billed", by_request, registry=r)
        self.completion_tokens = Counter("gateway_completion_tokens_total", "Completion tokens billed",
                                         by_request, registry=r)
        self.cost = Counter("gateway_cost_usd_total", "Cost charged to teams, in USD", by_request, registry=r)

        self.duration = Histogram("gateway_request_duration_seconds",
                                  "From a request's arrival until the client had the whole answer", by_route,
                                  buckets=DURATION_BUCKETS, registry=r)
        self.ttft = Histogram("gateway_time_to_first_token_seconds",
                              "From a streamed request's arrival until the upstream's first byte", by_route,
                              buckets=TTFT_BUCKETS, registry=r)
        self.overhead = Histogram("gateway_overhead_seconds",
                                  "Time the gateway added: a request's duration minus its upstream time",
                                  by_route, buckets=OVERHEAD_BUCKETS, registry=r)

        self.upstream_errors = Counter("gateway_upstream_errors_total", "Upstream attempts that failed",
                                       ["provider", "reason"], registry=r)
        self.usage_estimated = Counter("gateway_usage_estimated_total",
                                       "Requests billed from the gateway's own token counts: the upstream's usage "
                                       "was absent or could not be billed", ["provider", "reason"], registry=r)
        self.pending_writes = Gauge("gateway_store_pending_writes",
                                    "Releases and settlements the store did not answer, waiting to be sent again",
                                    multiprocess_mode="livesum", registry=r)
        self.retries = Counter("gateway_retries_total",
                               "Upstream attempts beyond a request's first, by the provider that ended it",
                               by_route, registry=r)
        self.fallbacks = Counter("gateway_fallbacks_total",
                                 "Requests answered by a later attempt after an earlier one failed", by_route,
                                 registry=r)
        self.pool_served = Counter("gateway_pool_served_requests_total",
                                   "Requests of a model with a vLLM pool route that the pool answered", by_route,
                                   registry=r)
        self.pool_spillover = Counter("gateway_pool_spillover_requests_total",
                                      "Requests of a model with a vLLM pool route answered by another provider",
                                      by_route, registry=r)

        by_endpoint = ["provider", "endpoint"]
        self.inflight = Gauge("gateway_upstream_inflight_requests", "Requests sent to an endpoint and not finished",
                              by_endpoint, multiprocess_mode="livesum", registry=r)
        self.endpoint_up = Gauge("gateway_endpoint_up", "1 while an endpoint passes its health checks, else 0",
                                 by_endpoint, multiprocess_mode="livemin", registry=r)
        self.circuit_state = Gauge("gateway_circuit_state",
                                   "A route's circuit breaker at an endpoint: 0 closed, 1 half-open, 2 open",
                                   ["model", "provider", "endpoint"], multiprocess_mode="livemax", registry=r)
        self.price_differs = Gauge("gateway_route_price_differs",
                                   "1 when the price a provider's /models publishes for a route's model differs "
                                   "from the configured one (the gateway bills the configured one)",
                                   ["model", "provider"], multiprocess_mode="livemax", registry=r)
        self.pool_capacity = Gauge("gateway_pool_capacity_requests",
                                   "In-flight requests a pool member takes from the gateway (max_inflight)",
                                   by_endpoint, multiprocess_mode="livesum", registry=r)
        self.pool_waiting = Gauge("gateway_pool_waiting_requests",
                                  "vllm:num_requests_waiting at a pool member's last scrape", by_endpoint,
                                  multiprocess_mode="livemostrecent", registry=r)
        self.pool_running = Gauge("gateway_pool_running_requests",
                                  "vllm:num_requests_running at a pool member's last scrape", by_endpoint,
                                  multiprocess_mode="livemostrecent", registry=r)
        self.pool_kv_cache = Gauge("gateway_pool_kv_cache_usage_ratio",
                                   "vllm:kv_cache_usage_perc (0..1) at a pool member's last scrape", by_endpoint,
                                   multiprocess_mode="livemostrecent", registry=r)
        self.pool_busy = Gauge("gateway_pool_busy",
                               "1 while a pool member's /metrics does not answer in time (no room), else 0",
                               by_endpoint, multiprocess_mode="livemax", registry=r)

        by_budget = ["team", "period"]
        self.budget = Gauge("gateway_team_budget_usd", "A team's budget for the period (day or month), in USD",
                            by_budget, multiprocess_mode="livemax", registry=r)
        self.spend = Gauge("gateway_team_spend_usd", "A team's spend this period, settled plus in flight, in USD",
                           by_budget, multiprocess_mode="livemostrecent", registry=r)
        self.budget_remaining = Gauge("gateway_team_budget_remaining_usd",
                                      "What remains of a team's budget this period, in USD", by_budget,
                                      multiprocess_mode="livemostrecent", registry=r)

        self.config_version = Gauge("gateway_config_version", "The published config version a worker serves "
                                    "(0: the file it started from, before any reload)", multiprocess_mode="liveall",
                                    registry=r)

        self.store_duration = Histogram("gateway_store_duration_seconds", "Store calls, by operation",
                                        ["operation"], buckets=STORE_BUCKETS, registry=r)
        self.store_failures = Counter("gateway_store_failures_total",
                                      "Store calls that got no answer (timeout, refused, error)", ["operation"],
                                      registry=r)

        self._served: dict[tuple[str, str, str, int], _Served] = {}
        self._refused: dict[int, Counter] = {}
        self._failed: dict[tuple[str, str], Counter] = {}
        # Series a dashboard divides by or plots exist from the start, at zero.
        for status in ("4xx", "5xx"):
            self.refusals.labels(status)
        for operation in STORE_OPERATIONS:
            self.store_failures.labels(operation)
        self.use(config)

    def use(self, config: Config) -> None:
        """The models and pools of this config (at start, and after a reload)."""
        self._config = config
        self._pool_providers = frozenset(name for name, p in config.providers.items() if p.is_pool)
        self._pooled_models = frozenset(name for name, m in config.models.items()
                                        if any(r.provider in self._pool_providers for r in m.routes))
        self._served = {}  # each holds whether its route is a pool's, which the config may have changed
        for name, model in config.models.items():
            for route in model.routes:
                self.pool_counter(name, route.provider)

    # --- the request path ------------------------------------------------------------

    def settled(self, outcome: Outcome, record: UsageRecord) -> None:
        """A Settler observer: one request's traffic, tokens, cost and timings."""
        key = (record.team, record.model, record.provider, record.status)
        served = self._served.get(key)
        if served is None:
            served = self._served[key] = _Served(self, record.team, record.model,
                                                 record.provider or NO_PROVIDER, record.status)
        served.requests.inc()
        if record.prompt_tokens:
            served.prompt_tokens.inc(record.prompt_tokens)
        if record.completion_tokens:
            served.completion_tokens.inc(record.completion_tokens)
        if record.cost_nano:
            served.cost.inc(record.cost_nano / 1e9)
        ended = outcome.ended or time.monotonic()
        total = ended - outcome.started
        served.duration.observe(total)
        if outcome.upstream_started and served.overhead is not None:
            # Upstream times come from the event loop's clock, which may tick in whole
            # milliseconds (uvloop): never report less than nothing.
            upstream = outcome.upstream_ended - outcome.upstream_started
            served.overhead.observe(max(total - upstream, 0.0))
            if outcome.stream and served.ttft is not None:
                served.ttft.observe(max(outcome.first_byte_at - outcome.started, 0.0))
        if outcome.attempts > 1:
            served.retries.inc(outcome.attempts - 1)
            if served.fallbacks is not None:
                served.fallbacks.inc()
        if served.pool_share is not None:
            served.pool_share.inc()
        if served.stream_errors is not None and outcome.stream:
            served.stream_errors.inc()
        if outcome.usage_estimated in ("absent", "invalid"):  # the upstream's doing, unlike a stream cut short
            self.usage_estimated.labels(record.provider, outcome.usage_estimated).inc()

    def refused(self, status: int) -> None:
        child = self._refused.get(status)
        if child is None:
            child = self._refused[status] = self.refusals.labels(status_class(status))
        child.inc()

    def upstream_failed(self, provider: str, error: GatewayError) -> None:
        """An attempt failed before its first byte (the request may still succeed elsewhere)."""
        key = (provider, failure_reason(error))
        child = self._failed.get(key)
        if child is None:
            child = self._failed[key] = self.upstream_errors.labels(*key)
        child.inc()

    def pool_counter(self, model: str, provider: str) -> Counter | None:
        """The pool-served or spill-over child for a request of `model` answered by `provider`."""
        if model not in self._pooled_models or provider == NO_PROVIDER:
            return None
        family = self.pool_served if provider in self._pool_providers else self.pool_spillover
        return family.labels(model, provider)

    def metered(self, store: Store) -> MeteredStore:
        """`store`, timing every call into gateway_store_duration_seconds."""
        return MeteredStore(store, self.store_duration, self.store_failures)

    # --- lifecycle and exposition ----------------------------------------------------

    def start(self) -> None:
        if self._buffer is not None:
            self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()

    def flush(self) -> None:
        """Write this process's buffered counts to the multiprocess files (nothing to do in one process)."""
        if self._buffer is not None:
            self._buffer.flush()

    async def _flush_round(self) -> None:
        self.flush()

    def close(self) -> None:
        """Called last at shutdown, after whatever else sets gauges."""
        self.flush()
        if self.multiprocess:
            # This process's live gauges leave the sums; its counters stay counted.
            multiprocess.mark_process_dead(os.getpid())

    def exposition(self) -> tuple[bytes, str]:
        """Prometheus text of every worker's values (multiprocess) or of this process's."""
        if not self.multiprocess:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        self.flush()  # this worker's own figures are exact; the others' are as of their last flush
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged), CONTENT_TYPE_LATEST
