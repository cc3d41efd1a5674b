"""Every netmind-dedicated provider of one gateway process: its watcher, its ledger and its autoscaler, together.

Built once from config and the router (each configured service is one of the router's
endpoints for its provider); `observe` is the settlement observer; `describe` is
/admin/endpoints.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry

from gateway.accounting.settlement import Outcome
from gateway.background import Periodic, stop_all
from gateway.config import Config, ProviderConfig
from gateway.dedicated.autoscaler import MAX_TICK_S, Autoscaler
from gateway.dedicated.client import ControlPlane
from gateway.dedicated.cost import Ledger, effective_per_mtok_nano
from gateway.dedicated.metrics import DedicatedMetrics
from gateway.dedicated.watcher import Watcher
from gateway.money import nano_to_usd
from gateway.routing import Router
from gateway.store import UsageRecord


class DedicatedProvider:
    """One dedicated provider's parts."""

    def __init__(self, provider: ProviderConfig, config: Config, router: Router, metrics: DedicatedMetrics | None,
                 clock: Callable[[], float]) -> None:
        d = provider.dedicated
        assert d is not None
        self.provider = provider
        self._metrics = metrics
        self._clock = clock
        self.client = ControlPlane(d.control_url, d.control_token, d.control_timeout_s)
        self.watcher = Watcher(provider, router.endpoints[provider.name], self.client, metrics, clock)
        self.ledger = Ledger(provider.name, config, max(d.autoscale.window_s, d.autoscale.idle_window_s), clock)
        self.autoscaler = (Autoscaler(provider, self.watcher, self.ledger, self.client, metrics, clock)
                           if d.autoscale.enabled else None)
        name = provider.name
        self._loops = [Periodic(f"dedicated provider {name}: status poll", d.status_poll_s, self.watcher.poll_once)]
        if self.autoscaler is not None:
            self._loops.append(Periodic(f"autoscaler {name}", min(MAX_TICK_S, d.status_poll_s), self.autoscaler.tick))
        if metrics is not None:
            self._loops.append(Periodic(f"dedicated provider {name}: cost gauges", MAX_TICK_S, self._report))

    async def start(self) -> None:
        await self.watcher.first_poll()
        if self._metrics is not None:
            await self._report()
        for loop in self._loops:
            loop.start()

    async def stop(self) -> None:
        await stop_all(self._loops)
        await self.client.close()

    def observe(self, outcome: Outcome, record: UsageRecord) -> None:
        tokens = self.ledger.tokens
        self.ledger.observe(outcome, record)
        if self._metrics is not None and self.ledger.tokens > tokens:
            self._metrics.tokens.labels(self.provider.name).inc(self.ledger.tokens - tokens)

    def cost(self) -> dict[str, Any]:
        """The services' cost beside what their tokens would have cost per token."""
        d = self.provider.dedicated
        assert d is not None
        ledger, accrued, hourly = self.ledger, self.watcher.accrued_nano(), self.watcher.hourly_nano()
        window_s = d.autoscale.window_s
        spill_cost, spill, _, _ = ledger.window.over(self._clock(), window_s)
        effective = effective_per_mtok_nano(accrued, ledger.tokens)
        equivalent = effective_per_mtok_nano(ledger.equivalent_nano, ledger.tokens)
        return {
            "models": ledger.models,
            "hourly_usd": None if hourly is None else nano_to_usd(hourly),
            "accrued_usd": round(nano_to_usd(round(accrued)), 9),
            "requests_served": ledger.requests,
            "tokens_served": ledger.tokens,
            "effective_usd_per_mtok": None if effective is None else nano_to_usd(effective),
            "per_token_equivalent_usd": nano_to_usd(ledger.equivalent_nano),
            "per_token_equivalent_usd_per_mtok": None if equivalent is None else nano_to_usd(equivalent),
            "spillover": {"window_s": window_s, "requests": spill, "usd": nano_to_usd(spill_cost),
                          "usd_per_hour": nano_to_usd(round(spill_cost * 3600 / window_s))},
        }

    def describe(self) -> dict[str, Any]:
        d = self.provider.dedicated
        assert d is not None
        now = self._clock()
        services = []
        for state in self.watcher.states:
            hourly = state.hourly_nano()
            services.append({
                "service_id": state.service_id, "status": state.status, "takes_traffic": state.endpoint.healthy,
                "instances": state.instances, "flavor_id": state.flavor_id, "invoke_url": state.endpoint.url,
                "capacity": state.endpoint.max_inflight, "inflight": state.endpoint.inflight,
                "status_for_s": round(now - state.changed_at, 3),
                "polled_s_ago": None if state.polled_at is None else round(now - state.polled_at, 3),
                "poll_error": state.error,
                "instance_hourly_usd": None if state.instance_hourly_nano is None
                else nano_to_usd(state.instance_hourly_nano),
                "hourly_usd": None if hourly is None else nano_to_usd(hourly),
            })
        return {"control_url": d.control_url, "services": services, "cost": self.cost(),
                "autoscale": self.autoscaler.describe() if self.autoscaler is not None
                else {"enabled": False}}

    async def _report(self) -> None:
        """Copy cost figures into gauges, off the request path."""
        assert self._metrics is not None
        name, m = self.provider.name, self._metrics
        cost = self.cost()
        for gauge, value in ((m.hourly_cost, cost["hourly_usd"]), (m.effective, cost["effective_usd_per_mtok"]),
                             (m.equivalent, cost["per_token_equivalent_usd_per_mtok"]),
                             (m.spillover, cost["spillover"]["usd_per_hour"])):
            if value is not None:
                gauge.labels(name).set(value)


class DedicatedEndpoints:
    """The dedicated providers of one gateway process (none: every method does nothing)."""

    def __init__(self, config: Config, router: Router, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        dedicated = [p for p in config.providers.values() if p.dedicated is not None and p.enabled]
        metrics = DedicatedMetrics(registry) if dedicated and registry is not None else None
        self.providers = {p.name: DedicatedProvider(p, config, router, metrics, clock) for p in dedicated}

    def __bool__(self) -> bool:
        return bool(self.providers)

    def observe(self, outcome: Outcome, record: UsageRecord) -> None:
        for provider in self.providers.values():
            provider.observe(outcome, record)

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.providers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.providers.values()))

    def describe(self) -> dict[str, Any]:
        return {name: provider.describe() for name, provider in self.providers.items()}
