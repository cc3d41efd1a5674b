"""The gateway's configuration as typed, frozen objects, validated once at start-up.

The hot path reads only these objects; raw YAML never leaves `gateway.config_load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from gateway.store import Limits
from providers import Profile


class ConfigError(ValueError):
    """A config value that cannot be used; the message names its place and the fix."""

    def __init__(self, place: str, problem: str) -> None:
        super().__init__(f"{place}: {problem}" if place else problem)
        self.place = place
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    admin_key: str = ""
    max_body_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = "memory://"
    on_failure: str = "deny"  # "deny": 503 while the store is down; "allow": admit unmetered
    timeout_s: float = 0.5
    reservation_ttl_s: float = 900.0
    records_max: int = 100_000


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    first_byte_s: float = 60.0
    idle_s: float = 60.0
    total_s: float = 600.0


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A NetMind dedicated service to create: its GPU flavor, its image and its size."""

    flavor_id: str
    image_url: str
    name: str = "gateway-endpoint"
    description: str = ""
    command: str = ""
    port: int = 8000
    gpu_num: int = 1
    instances: int = 1


@dataclass(frozen=True, slots=True)
class AutoscaleConfig:
    """When the gateway changes a dedicated service's instance count (see gateway.dedicated.autoscaler)."""

    enabled: bool = False
    dry_run: bool = True  # decide and log, never call the control plane
    min_instances: int = 1  # 0 lets an idle service be stopped
    max_instances: int = 1
    window_s: float = 300.0  # spill-over cost is judged over this long
    idle_window_s: float = 900.0  # an instance must have been surplus this long to be removed
    cooldown_s: float = 600.0  # at least this long between two scaling actions


@dataclass(frozen=True, slots=True)
class DedicatedConfig:
    """A provider of kind netmind-dedicated: rented services, their control plane and autoscaler."""

    services: tuple[str, ...] = ()  # service ids, one endpoint each
    invoke_url_template: str = ""  # a service's OpenAI base URL, with {service_id}
    control_url: str = ""
    control_token: str = ""
    create: ServiceSpec | None = None  # what `gateway endpoints create` asks for
    max_inflight_per_instance: int = 8
    status_poll_s: float = 10.0
    control_timeout_s: float = 10.0
    instance_hourly_nano: int | None = None  # None: the flavor's price per GPU-hour x gpu_num
    autoscale: AutoscaleConfig = AutoscaleConfig()

    def invoke_url(self, service_id: str) -> str:
        return self.invoke_url_template.format(service_id=service_id).rstrip("/")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One configured upstream: a profile plus this deployment's credentials and limits."""

    name: str
    kind: str
    profile: Profile
    base_urls: tuple[str, ...]  # one, or one per pool member
    api_key: str = ""
    enabled: bool = True
    unsupported_params: str = "drop"  # or "reject"
    timeouts: Timeouts = Timeouts()
    headers: tuple[tuple[str, str], ...] = ()
    max_waiting: int = 4  # a pool member with more queued requests has no room
    max_inflight: int = 64
    hourly_cost_nano: int | None = None
    dedicated: DedicatedConfig | None = None  # kind netmind-dedicated only
    abandoned_streams: str = "close"  # or "finish" (see providers.profile.Profile)

    @property
    def is_pool(self) -> bool:
        """Paid by the hour, so first while it has room: a vLLM pool or rented dedicated services."""
        return self.profile.has_load_metrics or self.dedicated is not None


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok_nano: int
    output_per_mtok_nano: int


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One way to serve a public model: a provider and that provider's own model id."""

    provider: str
    model: str
    price: Price | None = None


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    routes: tuple[RouteConfig, ...]
    strategy: str | None = None


@dataclass(frozen=True, slots=True)
class TeamConfig:
    name: str
    limits: Limits = Limits()
    models: tuple[str, ...] = ("*",)  # glob patterns of public model names
    key_hashes: tuple[str, ...] = ()  # keys written in config, stored hashed
    max_tokens_default: int = 4096  # the worst case reserved when a client names none


@dataclass(frozen=True, slots=True)
class CircuitConfig:
    failures: int = 5  # consecutive failures that open a circuit
    error_ratio: float = 0.5  # or this share of errors over the window...
    min_requests: int = 10  # ...once the window holds at least this many requests
    window_s: float = 30.0
    cooldown_s: float = 15.0


@dataclass(frozen=True, slots=True)
class LatencyConfig:
    """How the EWMAs of time to first token and time per token follow a route's traffic."""

    alpha: float = 0.2  # the weight of each new sample: higher follows changes faster, and noise too
    # An estimate not refreshed for this long reads as unknown, so a route once slow is measured anew.
    forget_after_s: float = 300.0


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    strategy: str = "balanced"
    max_attempts: int = 3
    cost_weight: float = 1.0
    latency_weight: float = 1.0
    # What a second of expected latency is worth, in USD, when `balanced` weighs it against cost.
    usd_per_second: float = 0.0001
    circuit: CircuitConfig = CircuitConfig()
    latency: LatencyConfig = LatencyConfig()
    models_poll_s: float = 60.0  # 0: never poll /v1/models
    metrics_poll_s: float = 2.0  # a pool member's /metrics and /health
    # A pool member whose /metrics takes longer than this to answer is too busy to take more.
    metrics_timeout_s: float = 5.0
    # A route whose expected time to first token is above this is tried only after those
    # below it ("fast enough"); 0: no limit.
    max_ttft_s: float = 0.0
    rate_limit_cooldown_s: float = 1.0  # how long a 429 without Retry-After keeps a route out


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    routing: RoutingConfig = RoutingConfig()
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    teams: Mapping[str, TeamConfig] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def auth_required(self) -> bool:
        """With no teams configured the gateway is open; any team makes keys mandatory."""
        return bool(self.teams)
