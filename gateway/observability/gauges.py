"""Gauges of state that lives elsewhere: routes and pools (the router's), budgets (the store's).

Copied on a timer, off the request path: the router's in-memory state every second,
each team's spend every few seconds with one store call per team.
"""

from __future__ import annotations

import logging
from collections.abc import Sized

from gateway.accounting.periods import utc_periods
from gateway.background import Periodic, stop_all
from gateway.config import Config
from gateway.observability.metrics import Metrics
from gateway.redact import without_credentials
from gateway.routing import Router
from gateway.routing.health import CLOSED, HALF_OPEN, OPEN
from gateway.store import Store, StoreUnavailable

log = logging.getLogger("gateway.observability.metrics")

ROUTES_EVERY_S = 1.0
BUDGETS_EVERY_S = 5.0
CIRCUIT_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
PERIODS = ("day", "month")


def endpoint_label(url: str) -> str:
    """An endpoint's URL as a label value: without credentials, query or fragment."""
    return without_credentials(url)


class StateGauges:
    """Owns the refresh task; `refresh_routes` and `refresh_budgets` run one round each (tests)."""

    def __init__(self, metrics: Metrics, config: Config, router: Router, store: Store, outbox: Sized = (),
                 routes_every_s: float = ROUTES_EVERY_S, budgets_every_s: float = BUDGETS_EVERY_S) -> None:
        self._store = store
        self._outbox = outbox
        self._pending = metrics.pending_writes
        self._loops = [Periodic("route gauges", routes_every_s, self._refresh_routes, immediately=True),
                       Periodic("budget gauges", budgets_every_s, self.refresh_budgets, immediately=True)]
        m = metrics
        used = sorted({route.name for routes in router.routes.values() for route in routes})
        # Children bound once; a round only reads attributes and sets values.
        self._endpoints = []
        self._pool_members = []
        for name in used:
            provider = config.providers[name]
            for endpoint in router.endpoints[name]:
                labels = (name, endpoint_label(endpoint.url))
                self._endpoints.append((endpoint, m.inflight.labels(*labels), m.endpoint_up.labels(*labels)))
                if provider.is_pool:
                    m.pool_capacity.labels(*labels).set(provider.max_inflight)
                    self._pool_members.append((endpoint, m.pool_waiting.labels(*labels), m.pool_running.labels(*labels),
                                               m.pool_kv_cache.labels(*labels), m.pool_busy.labels(*labels)))
        self._circuits = [(circuit, m.circuit_state.labels(model, route.name, endpoint_label(endpoint.url)))
                          for model, routes in router.routes.items() for route in routes
                          for circuit, endpoint in zip(route.circuits, route.endpoints)]
        self._prices = [(route, m.price_differs.labels(model, route.name))
                        for model, routes in router.routes.items() for route in routes]
        self._teams = []
        for team in config.teams.values():
            limits = {"day": team.limits.budget_day_nano, "month": team.limits.budget_month_nano}
            spend = {period: m.spend.labels(team.name, period) for period in PERIODS}
            remaining = {}
            for period, limit in limits.items():
                if limit is not None:
                    m.budget.labels(team.name, period).set(limit / 1e9)
                    remaining[period] = (limit, m.budget_remaining.labels(team.name, period))
            self._teams.append((team.name, spend, remaining))

    def refresh_routes(self) -> None:
        self._pending.set(len(self._outbox))
        for endpoint, inflight, up in self._endpoints:
            inflight.set(endpoint.inflight)
            up.set(1 if endpoint.healthy else 0)
        for endpoint, waiting, running, kv_cache, busy in self._pool_members:
            busy.set(1 if endpoint.busy else 0)
            # A gauge the last scrape did not report keeps its previous value rather than reading as 0.
            if endpoint.waiting is not None:
                waiting.set(endpoint.waiting)
            if endpoint.running is not None:
                running.set(endpoint.running)
            if endpoint.kv_cache_usage is not None:
                kv_cache.set(endpoint.kv_cache_usage)
        for circuit, state in self._circuits:
            state.set(CIRCUIT_VALUES.get(circuit.state, 0))
        for route, differs in self._prices:
            differs.set(1 if route.price_differs() else 0)

    async def refresh_budgets(self) -> None:
        """One store call per team: this UTC day's and month's spend, settled and in flight."""
        day, month = utc_periods()
        for team, spend, remaining in self._teams:
            try:
                spent = dict(zip(PERIODS, await self._store.spend(team, day, month)))
            except StoreUnavailable:
                return  # counted in gateway_store_failures_total; the next round tries again
            for period, gauge in spend.items():
                gauge.set(spent[period] / 1e9)
            for period, (limit, gauge) in remaining.items():
                gauge.set(max(limit - spent[period], 0) / 1e9)

    def start(self) -> None:
        for loop in self._loops:
            loop.start()

    async def stop(self) -> None:
        await stop_all(self._loops)

    async def _refresh_routes(self) -> None:
        self.refresh_routes()
