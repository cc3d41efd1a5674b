"""Prometheus metrics of dedicated endpoints: services, capacity, cost and scaling decisions.

Registered in the gateway's own registry (`Metrics.registry`), so /metrics shows them,
merged across workers like the others. Labels are the provider and the service id (both
from config), a status, a scaling action and reason (fixed sets): nothing per request.

Each process reports its own view: with several workers, read cost per token in
Prometheus rather than from the per-process gauge, e.g.
  avg_over_time(gateway_dedicated_hourly_cost_usd[1h])
    / (increase(gateway_dedicated_tokens_total[1h]) / 1e6)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.dedicated.client import STATUSES, UNKNOWN


class DedicatedMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        by_service = ["provider", "service"]
        self.status = Gauge("gateway_dedicated_service_status",
                            "1 for the status a dedicated service has now (initializing, available, stopped, "
                            "unavailable, unknown), 0 for the others", [*by_service, "status"],
                            multiprocess_mode="livemax", registry=r)
        self.instances = Gauge("gateway_dedicated_instances",
                               "Instances of a dedicated service as its control plane reports them",
                               by_service, multiprocess_mode="livemax", registry=r)
        self.target = Gauge("gateway_dedicated_autoscaler_target_instances",
                            "Instances the autoscaler last decided on (a dry run's decision included)",
                            by_service, multiprocess_mode="livemostrecent", registry=r)
        self.capacity = Gauge("gateway_dedicated_capacity_requests",
                              "In-flight requests a dedicated service takes from this process: instances x "
                              "max_inflight_per_instance while available, else 0", by_service,
                              multiprocess_mode="livesum", registry=r)
        self.hourly_cost = Gauge("gateway_dedicated_hourly_cost_usd",
                                 "What a dedicated provider's services cost per hour now: the flavor's price per "
                                 "GPU-hour x GPUs per instance x instances", ["provider"],
                                 multiprocess_mode="livemax", registry=r)
        self.effective = Gauge("gateway_dedicated_effective_usd_per_mtok",
                               "This process's effective cost per million tokens served by a dedicated provider: "
                               "accrued hourly cost / tokens served, since the process started", ["provider"],
                               multiprocess_mode="livemostrecent", registry=r)
        self.equivalent = Gauge("gateway_dedicated_per_token_equivalent_usd_per_mtok",
                                "What the same tokens would have cost per million on each model's cheapest "
                                "per-token route", ["provider"], multiprocess_mode="livemostrecent", registry=r)
        self.spillover = Gauge("gateway_dedicated_spillover_usd_per_hour",
                               "Cost of the requests of a dedicated provider's models served per token over the "
                               "autoscaler's window, as a rate per hour", ["provider"],
                               multiprocess_mode="livesum", registry=r)
        self.tokens = Counter("gateway_dedicated_tokens_total",
                              "Tokens (prompt + completion) a dedicated provider served", ["provider"], registry=r)
        self.decisions = Counter("gateway_dedicated_scaling_decisions_total",
                                 "Scaling decisions by action (up, down), reason and mode (applied, dry_run, "
                                 "failed)", ["provider", "action", "reason", "mode"], registry=r)
        self.control_errors = Counter("gateway_dedicated_control_plane_errors_total",
                                      "Control-plane calls that failed, by reason", ["provider", "reason"],
                                      registry=r)

    def service_status(self, provider: str, service: str, status: str) -> None:
        status = status if status in STATUSES else UNKNOWN  # a status the docs do not name reads as unknown
        for known in (*STATUSES, UNKNOWN):
            self.status.labels(provider, service, known).set(1 if known == status else 0)
