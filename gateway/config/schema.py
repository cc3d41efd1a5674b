"""The config file's sections as frozen, typed objects: server, store, routing, models, teams.

Providers have their own module (`gateway.config.providers`). Money is written in USD and
read by the gateway as integer nano-dollars (`*_nano`); everything else keeps its unit.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from gateway.config.fields import Flag, Number, Seconds, Section, Text, Usd, Whole, in_range, nano, problem
from gateway.config.providers import Capabilities, ProviderConfig
from gateway.keys import hash_key
from gateway.redact import masked
from gateway.store import Limits
from gateway.store.address import AddressError, RedisAddress, Tls, parse_address

STRATEGIES = ("balanced", "cost", "latency", "ordered")
Strategy = Literal["balanced", "cost", "latency", "ordered"]


def _store_url(url: str) -> str:
    url = url or "memory://"
    if url.startswith("memory://"):
        return url
    try:
        parse_address(url)
    except AddressError as error:
        raise problem(f"{error} (in {masked(url)!r})") from None
    return url


LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class LogConfig(Section):
    """The gateway's own log (Python logging, uvicorn's lines included, on stderr) and its request
    lines (one JSON object per request, on stdout)."""

    level: LogLevel = "info"
    format: Literal["json", "text"] = "text"  # json: one object a line with time, level, logger, message
    requests: Flag = True


class TracingConfig(Section):
    """OpenTelemetry traces of requests, sent with OTLP over HTTP (needs the `otel` extra).

    Left empty, `endpoint` and `service_name` come from the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    (or OTEL_EXPORTER_OTLP_ENDPOINT) and OTEL_SERVICE_NAME; OTEL_EXPORTER_OTLP_HEADERS carries any
    credentials the collector wants, so that none is written in this file.
    """

    enabled: Flag = False
    endpoint: Text = ""  # e.g. http://otel-collector:4318/v1/traces
    service_name: Text = ""  # "" : $OTEL_SERVICE_NAME, else "llm-gateway"
    sample_ratio: Annotated[Number, in_range(0, 1)] = 1.0  # the share of requests traced


class ServerConfig(Section):
    host: Text = "127.0.0.1"
    port: Annotated[Whole, in_range(1, 65535)] = 8080
    workers: Annotated[Whole, in_range(1, 256)] = 1
    admin_key: Text = ""
    max_body_bytes: Annotated[Whole, in_range(1024)] = 4 * 1024 * 1024  # 413 above it
    log: LogConfig = LogConfig()
    log_level: LogLevel | None = None  # deprecated: log.level
    tracing: TracingConfig = TracingConfig()
    # A client's side of the connection, per worker: what a slow or idle client may hold.
    header_timeout_s: Annotated[Seconds, in_range(0.1, 300)] = 10.0  # a request's head must arrive within
    body_timeout_s: Annotated[Seconds, in_range(0.1, 3600)] = 30.0  # its body within this after (408)
    keepalive_timeout_s: Annotated[Seconds, in_range(0.1, 300)] = 5.0  # an idle connection between requests
    max_connections: Annotated[Whole, in_range(16, 1_000_000)] = 4096  # open client connections per worker
    shutdown_grace_s: Annotated[Seconds, in_range(0, 3600)] = 10.0  # SIGTERM: what runs may finish this long
    # The most tokens a request may ask to generate per choice (max_tokens): 400 above it.
    max_output_tokens: Annotated[Whole, in_range(1, 1 << 40)] = 1_000_000
    # Browser origins allowed to call the gateway (CORS), as "https://app.example.com"; "*" for any.
    cors_origins: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _old_log_level(self) -> ServerConfig:
        if self.log_level is not None and "level" not in self.log.model_fields_set:
            # Frozen for everyone else; this is still validation.
            object.__setattr__(self, "log", self.log.model_copy(update={"level": self.log_level}))
        return self


class UpstreamConfig(Section):
    """How much of an upstream's answer the gateway reads: a worker's memory is bounded by these."""

    max_error_body_bytes: Annotated[Whole, in_range(1024)] = 1 << 20  # an error message needs kilobytes
    # The largest legitimate answer: a 2,048 x 3,072 float embeddings batch is 60-80 MB of JSON.
    max_body_bytes: Annotated[Whole, in_range(1024)] = 128 << 20
    # One SSE event; the Responses API's `response.completed` repeats the whole output.
    max_event_bytes: Annotated[Whole, in_range(1024)] = 16 << 20


class StoreTls(Section):
    """TLS files for rediss:// (they win over the URL's ssl_* options)."""

    ca_certs: Text | None = None  # the CA that signed the server's certificate
    certfile: Text | None = None  # a client certificate, where the server asks for one
    keyfile: Text | None = None


class StoreConfig(Section):
    url: Annotated[Text, AfterValidator(_store_url)] = "memory://"
    tls: StoreTls | None = None
    on_failure: Literal["deny", "allow"] = "deny"  # deny: 503 while the store is down; allow: admit unmetered
    timeout_s: Annotated[Seconds, in_range(0.01, 30)] = 0.5
    reservation_ttl_s: Annotated[Seconds, in_range(1)] = 900.0
    records_max: Annotated[Whole, in_range(1)] = 100_000
    # A settlement counts once this many replicas have it (WAIT): none is lost when a primary fails
    # over, at a replication round trip per request. 0: the primary's word is enough.
    settle_replicas: Annotated[Whole, in_range(0, 16)] = 0
    # How long a stored Responses answer can be continued (previous_response_id) or read back.
    responses_ttl_s: Annotated[Seconds, in_range(60, 400 * 86_400)] = 30 * 86_400.0
    # While a team is far from its limits (within half of each), a worker admits its requests from a
    # lease of several, taken from the store at once and admitting for this long; 0: every admission
    # asks the store (gateway.accounting.leases).
    lease_s: Annotated[Seconds, in_range(0, 60)] = 1.0

    @model_validator(mode="after")
    def _tls_fits_the_url(self) -> StoreConfig:
        if self.tls is not None:
            if self.address is None:
                raise problem("TLS settings for the in-process store; set url to rediss://...", at="tls")
        return self

    @cached_property
    def address(self) -> RedisAddress | None:
        """The Redis the URL names; None for the in-process store."""
        if self.url.startswith("memory://"):
            return None
        tls = self.tls
        try:
            return parse_address(self.url, Tls(tls.ca_certs, tls.certfile, tls.keyfile) if tls else None)
        except AddressError as error:
            raise problem(str(error), at="tls") from None


class CircuitConfig(Section):
    failures: Annotated[Whole, in_range(1)] = 5  # consecutive failures that open a circuit
    error_ratio: Annotated[Number, in_range(0, 1)] = 0.5  # or this share of errors over the window...
    min_requests: Annotated[Whole, in_range(1)] = 10  # ...once the window holds at least this many requests
    window_s: Annotated[Seconds, in_range(0.1)] = 30.0
    cooldown_s: Annotated[Seconds, in_range(0.01)] = 15.0


class LatencyConfig(Section):
    """How the EWMAs of time to first token and time per token follow a route's traffic."""

    alpha: Annotated[Number, in_range(0.01, 1)] = 0.2  # a new sample's weight: higher follows changes (and noise)
    # An estimate not refreshed for this long reads as unknown, so a route once slow is measured anew.
    forget_after_s: Annotated[Seconds, in_range(1)] = 300.0


class Weights(Section):
    cost: Annotated[Number, in_range(0)] = 1.0
    latency: Annotated[Number, in_range(0)] = 1.0


class PartTokens(Section):
    """The most tokens one non-text part of a prompt counts for, by kind. They depend on the model
    (an image is 85 to 1,500 tokens for OpenAI's, up to 16,384 for Qwen2-VL), so they are
    config: a route's own, or routing's default. Reservations are only as true as these."""

    image: Annotated[Whole, in_range(1, 1 << 24)] = 2_560
    audio: Annotated[Whole, in_range(1, 1 << 24)] = 15_000
    file: Annotated[Whole, in_range(1, 1 << 24)] = 100_000


class RoutingConfig(Section):
    strategy: Strategy = "balanced"
    max_attempts: Annotated[Whole, in_range(1, 20)] = 3
    weights: Weights = Weights()
    # What a second of expected latency is worth, in USD, when `balanced` weighs it against cost.
    usd_per_second: Annotated[Number, in_range(0)] = 0.0001
    circuit: CircuitConfig = CircuitConfig()
    latency: LatencyConfig = LatencyConfig()
    models_poll_s: Annotated[Seconds, in_range(0)] = 60.0  # 0: never poll /v1/models
    metrics_poll_s: Annotated[Seconds, in_range(0.1)] = 2.0  # a pool member's /metrics and /health
    # A pool member whose /metrics takes longer than this to answer is too busy to take more.
    metrics_timeout_s: Annotated[Seconds, in_range(0.1)] = 5.0
    # Routes whose expected time to first token is above this come after those below it; 0: no limit.
    max_ttft_s: Annotated[Seconds, in_range(0)] = 0.0
    rate_limit_cooldown_s: Annotated[Seconds, in_range(0)] = 1.0  # how long a 429 without Retry-After lasts
    part_tokens: PartTokens = PartTokens()  # what an image, audio or file part counts for, unless a route says


class Price(Section):
    """A route's price per million tokens, in USD as written; read as nano-dollars."""

    input_per_mtok: Usd = 0.0
    output_per_mtok: Usd = 0.0

    @cached_property
    def input_per_mtok_nano(self) -> int:
        return nano(self.input_per_mtok) or 0

    @cached_property
    def output_per_mtok_nano(self) -> int:
        return nano(self.output_per_mtok) or 0


class RouteConfig(Section):
    """One way to serve a public model: a provider and that provider's own model id."""

    provider: str
    model: Text = ""  # empty: the public name
    price: Price | None = None
    # The model's context window in tokens (None: what the provider's /models says, if anything):
    # a request that cannot fit is not sent here, and one naming no max_tokens is bounded by it.
    context_window: Annotated[Whole, in_range(1)] | None = None
    max_output_tokens: Annotated[Whole, in_range(1)] | None = None  # the model's own limit per answer, if any
    capabilities: Capabilities = {}  # features this route honours beyond or short of its provider's
    part_tokens: PartTokens | None = None  # None: routing.part_tokens
    # Served only while no other route of its model is: a mock, or a last-ditch provider, that must
    # never take traffic from the real routes once their providers are enabled.
    stand_in: Flag = False


class ModelConfig(Section):
    derived: ClassVar[frozenset[str]] = frozenset({"name"})
    name: str = ""
    routes: tuple[RouteConfig, ...] = ()
    strategy: Strategy | None = None

    @field_validator("routes")
    @classmethod
    def _some_route(cls, routes: tuple[RouteConfig, ...]) -> tuple[RouteConfig, ...]:
        if not routes:
            raise problem("a model needs at least one route {provider, model}")
        return routes


class Budget(Section):
    day: Usd | None = None
    month: Usd | None = None


def _hashes(keys: Any) -> Any:
    # Only the hash of a key written in config is kept; an empty one (an unset variable) is no key.
    if isinstance(keys, list):
        return tuple(hash_key(str(key)) for key in keys if key and not isinstance(key, (dict, list)))
    return keys


class TeamConfig(Section):
    derived: ClassVar[frozenset[str]] = frozenset({"name"})
    name: str = ""
    budget_usd: Budget = Budget()
    rpm: Annotated[Whole, in_range(1)] | None = None
    tpm: Annotated[Whole, in_range(1)] | None = None
    models: tuple[Text, ...] = ("*",)  # glob patterns of public model names
    key_hashes: Annotated[tuple[str, ...], BeforeValidator(_hashes)] = Field((), validation_alias="keys")
    # Keys accepted only from a client on this machine (loopback, not relayed by a proxy): a well-known
    # key for a first run or a local tool is then no key at all to anyone else.
    loopback_key_hashes: Annotated[tuple[str, ...], BeforeValidator(_hashes)] = Field(
        (), validation_alias="loopback_keys")
    # A request naming no max_tokens is sent this one where a route's context window is unknown,
    # so that what it reserves is still a true worst case.
    max_tokens_default: Annotated[Whole, in_range(1)] = 4096
    max_tokens_cap: Annotated[Whole, in_range(1)] | None = None  # a cap on every request, sent to every route

    @model_validator(mode="after")
    def _keys_of_one_kind(self) -> TeamConfig:
        if set(self.key_hashes) & set(self.loopback_key_hashes):
            raise problem("a key is in both keys and loopback_keys; a loopback key is accepted from this machine "
                          "only, so list it once, where it belongs", at="loopback_keys")
        return self

    @property
    def metered(self) -> bool:
        """Whether anything this team does is counted against a limit of tokens or money."""
        limits = self.limits
        return limits.tpm is not None or limits.budget_day_nano is not None or limits.budget_month_nano is not None

    @cached_property
    def limits(self) -> Limits:
        """The team's policy as the store enforces it."""
        return Limits(rpm=self.rpm, tpm=self.tpm, budget_day_nano=nano(self.budget_usd.day),
                      budget_month_nano=nano(self.budget_usd.month))


class Config(Section):
    """The whole file. `models` holds only what is served: routes to disabled providers are
    left out (with a warning), and so is a model left without routes."""

    derived: ClassVar[frozenset[str]] = frozenset({"warnings"})
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    routing: RoutingConfig = RoutingConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}
    teams: dict[str, TeamConfig] = {}
    warnings: tuple[str, ...] = ()

    @property
    def auth_required(self) -> bool:
        """With no teams configured the gateway is open; any team makes keys mandatory."""
        return bool(self.teams)

    @model_validator(mode="before")
    @classmethod
    def _named_entries(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        return {**raw, **{section: _named(raw[section], section == "providers")
                          for section in ("providers", "models", "teams") if isinstance(raw.get(section), dict)}}

    @model_validator(mode="after")
    def _served(self) -> Config:
        _check_workers(self)
        warnings = [reason for p in self.providers.values() if (reason := p.disabled_because)]
        if self.server.log_level is not None:
            warnings.append("server.log_level is deprecated; write server.log: {level: ...}")
        models = {}
        for name, model in self.models.items():
            routes = _served_routes(name, model, self.providers)
            if not routes:
                warnings.append(f"models.{name}: every route's provider is disabled; the model is not served")
                continue
            models[name] = model.model_copy(update={"routes": routes})
            if all(route.stand_in for route in routes) and not all(route.stand_in for route in model.routes):
                warnings.append(f"models.{name}: served by its stand-in route ({', '.join(r.provider for r in routes)}) "
                                "until the provider of another of its routes is enabled")
            warnings += _blind_routes(name, models[name], self)
        # Frozen for everyone else; this is still validation, and a model's served routes need every provider.
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "warnings", (*self.warnings, *warnings))
        return self


def _blind_routes(name: str, model: ModelConfig, config: Config) -> list[str]:
    """A warning for each route whose context window nothing tells, where some team is metered."""
    metered = [team for team in config.teams.values() if team.metered and team.max_tokens_cap is None]
    if not metered:
        return []
    polled = config.routing.models_poll_s > 0
    warnings = []
    for i, route in enumerate(model.routes):
        profile = config.providers[route.provider].profile
        if route.context_window is None and not (polled and profile.publishes_windows and profile.lists_models):
            caps = ", ".join(f"{team.name}: {team.max_tokens_default}" for team in metered)
            warnings.append(f"models.{name}.routes[{i}]: no context_window; a request naming no max_tokens is sent "
                            f"its team's max_tokens_default there ({caps}) so that budgets hold; set context_window "
                            "to let such requests run to the model's limit")
    return warnings


def _named(entries: dict[str, Any], providers: bool) -> dict[str, Any]:
    """Each entry of a section knows its key; a provider's kind defaults to its name."""
    named = {}
    for name, spec in entries.items():
        spec = spec if spec is not None else {}
        if isinstance(spec, dict):
            spec = {**({"kind": name} if providers else {}), **spec, "name": str(name)}
        named[name] = spec
    return named


def _check_workers(config: Config) -> None:
    workers = config.server.workers
    if workers > 1 and config.store.url.startswith("memory://"):
        raise problem(f"{workers} workers need a shared store: the in-process store (memory://) holds one "
                      "worker's quotas only; set store.url to redis://...", at="server.workers")
    for name, provider in config.providers.items():
        scaling = provider.dedicated.autoscale if provider.dedicated else None
        if scaling and scaling.enabled and not scaling.dry_run and workers > 1:
            raise problem(f"each of {workers} workers would scale on its own share of the traffic; use dry_run, "
                          "or one worker", at=f"providers.{name}.autoscale.enabled")


def _served_routes(name: str, model: ModelConfig, providers: dict[str, ProviderConfig]) -> tuple[RouteConfig, ...]:
    known = ", ".join(sorted(providers)) or "none configured"
    routes = []
    for i, route in enumerate(model.routes):
        where = f"models.{name}.routes[{i}]"
        provider = providers.get(route.provider)
        if provider is None:
            raise problem(f"no provider named {route.provider!r} (known: {known})", at=f"{where}.provider")
        upstream_model = route.model or name
        if provider.profile.lowercase_model_ids and upstream_model != upstream_model.lower():
            raise problem(f"{provider.kind} model ids are lower-case; write {upstream_model.lower()!r}",
                          at=f"{where}.model")
        if provider.enabled:
            routes.append(route if route.model else route.model_copy(update={"model": upstream_model}))
    # Stand-ins are the model's only routes, or none of them.
    real = tuple(route for route in routes if not route.stand_in)
    return real or tuple(routes)
