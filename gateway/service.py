"""The running gateway: every collaborator of the request path, built once from config."""

from __future__ import annotations

import logging
import time

from gateway.accounting.admission import Admitter
from gateway.accounting.settlement import Settler
from gateway.auth import KeyRing
from gateway.config import Config
from gateway.dedicated import DedicatedEndpoints
from gateway.observability.gauges import StateGauges
from gateway.observability.metrics import Metrics
from gateway.routing import Router, Signals
from gateway.store import Store, StoreUnavailable, open_store
from gateway.upstream.client import UpstreamClient

log = logging.getLogger("gateway")


class Gateway:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.started_at = time.time()
        self.metrics = Metrics(config)
        self.store = self.metrics.metered(store or open_store(config.store.url, timeout_s=config.store.timeout_s,
                                                              max_records=config.store.records_max))
        self.keys = KeyRing(config, self.store)
        self.router = Router(config)
        self.signals = Signals(config, self.router)  # keeps the router's scraped signals fresh
        self.admitter = Admitter(config, self.store)
        self.settler = Settler(self.store)
        self.upstream = UpstreamClient()
        self.settler.observers.append(self.metrics.settled)
        # Rented services: their status decides their routes; their traffic and spill-over, their size.
        self.dedicated = DedicatedEndpoints(config, self.router, self.metrics.registry)
        if self.dedicated:
            self.settler.observers.append(self.dedicated.observe)
        self.gauges = StateGauges(self.metrics, config, self.router, self.store)

    async def start(self) -> None:
        for warning in self.config.warnings:
            log.warning(warning)
        if not self.config.auth_required:
            log.warning("no teams configured: the gateway accepts requests without an API key")
        await self.upstream.start(dict(self.config.providers))
        await self.keys.start()
        await self.signals.start()
        await self.dedicated.start()
        self.gauges.start()

    async def stop(self) -> None:
        await self.dedicated.stop()
        await self.signals.stop()
        await self.gauges.stop()
        self.metrics.close()  # after whatever else sets gauges: it takes this process's out of the sums
        await self.keys.stop()
        await self.upstream.close()
        await self.store.close()

    async def ready(self) -> tuple[bool, str]:
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            return False, f"store unavailable: {exc}"
        return True, "ok"
