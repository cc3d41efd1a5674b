"""The running gateway: every collaborator of the request path, built once from config."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.accounting.admission import Admitter
from gateway.accounting.inflight import InFlight
from gateway.accounting.outbox import Outbox
from gateway.accounting.settlement import Settler
from gateway.auth import KeyRing
from gateway.config import Config, ConfigError
from gateway.dedicated import DedicatedEndpoints
from gateway.heap import freeze_long_lived
from gateway.mock import MockServers
from gateway.observability.gauges import StateGauges
from gateway.observability.metrics import Metrics
from gateway.observability.request_log import RequestLog
from gateway.reload import Reloader
from gateway.routing import Router, Signals
from gateway.server import GatewayProtocol
from gateway.store import Store, StoreUnavailable, open_store
from gateway.upstream.client import UpstreamClient

log = logging.getLogger("gateway")
DRAIN_TIMEOUT_S = 5.0  # at shutdown, how long settlements in flight may take to reach the store


class Gateway:
    """`config` and `router` are what new requests run on; `apply` swaps both at once (a reload).

    `owns_process`: the gateway is all its process serves (a worker), so what it holds once
    started is frozen out of garbage collections (gateway.heap).
    """

    def __init__(self, config: Config, store: Store | None = None, *, path: str | None = None,
                 text: str | None = None, owns_process: bool = False) -> None:
        self.config = config
        self.owns_process = owns_process
        self.started_at = time.time()
        self.metrics = Metrics(config)
        self.store = self.metrics.metered(store or open_store(config.store.url, timeout_s=config.store.timeout_s,
                                                              max_records=config.store.records_max,
                                                              address=config.store.address,
                                                              replicas=config.store.settle_replicas))
        self.keys = KeyRing(config, self.store)
        self.router = Router(config)
        self.signals = Signals(config, self.router)  # keeps the router's scraped signals fresh
        self.outbox = Outbox(self.store)  # releases and settlements the store did not answer, retried
        self.admitter = Admitter(config, self.store, self.outbox)
        self.settler = Settler(self.store, self.outbox, self.admitter.leases)
        self.inflight = InFlight()  # admitted requests not settled yet
        self.upstream = UpstreamClient(config.upstream)
        self.mocks = MockServers(config.providers)  # the built-in mock upstreams, on loopback in this process
        self.settler.observers.append(self.metrics.settled)
        self.request_log = RequestLog(self.metrics.registry) if config.server.log.requests else None
        if self.request_log is not None:
            self.settler.observers.append(self.request_log.settled)
        self.tracer = traced(config) if config.server.tracing.enabled else None  # imported only when on
        if self.tracer is not None:
            self.settler.observers.append(self.tracer.settled)
        # Rented services: their status decides their routes; their traffic and spill-over, their size.
        self.dedicated = DedicatedEndpoints(config, self.router, self.metrics.registry)
        if self.dedicated:
            self.settler.observers.append(self.dedicated.observe)
        self.gauges = StateGauges(self.metrics, config, self.router, self.store, self.outbox)
        self.reloader = Reloader(self, path, text)

    async def start(self) -> None:
        for warning in self.config.warnings:
            log.warning(warning)
        if not self.config.auth_required:
            log.warning("no teams configured: the gateway accepts requests without an API key")
        for team in self.config.teams.values():
            if team.loopback_key_hashes:
                log.warning("team '%s' accepts %d loopback key(s), from clients on this machine only (not through "
                            "a proxy); clients elsewhere need a key of their own", team.name,
                            len(team.loopback_key_hashes))
        for name, url in (await self.mocks.start()).items():
            self.router.locate(name, url)
        await self.upstream.start(dict(self.config.providers))
        await self.keys.start()
        await self.signals.start()
        await self.dedicated.start()
        self.outbox.start()
        self.gauges.start()
        self.metrics.start()
        if self.request_log is not None:
            self.request_log.start()
        await self.reloader.start()
        if self.owns_process:
            freeze_long_lived()

    async def apply(self, config: Config) -> None:
        """Serve `config` from the next request on; requests running keep theirs to the end.

        The swap is one step with no await in it (mock servers a new config names are started
        before it); the background parts that follow the config (pollers, gauges) are rebuilt after.
        """
        router = Router(config, previous=self.router, located=await self.mocks.use(config.providers))
        self.config, self.router = config, router
        self.keys.use(config)
        self.upstream.use(dict(config.providers), config.upstream)
        self.metrics.use(config)
        GatewayProtocol.configure(config.server)  # connection deadlines and caps, for what comes next
        await self.signals.stop()
        await self.gauges.stop()
        self.signals = Signals(config, router)
        self.gauges = StateGauges(self.metrics, config, router, self.store, self.outbox)
        await self.signals.start()
        self.gauges.start()
        if self.owns_process:
            freeze_long_lived()

    async def stop(self) -> None:
        # The server stopped taking requests and cancelled those past its grace period: their
        # settlements (and what the outbox holds) reach the store before it is closed.
        left = await self.inflight.drained(DRAIN_TIMEOUT_S)
        if left:
            log.error("%d requests were still unsettled when the gateway stopped", left)
        await self.reloader.stop()
        await self.admitter.leases.stop(DRAIN_TIMEOUT_S)  # before the outbox: what it could not give back goes there
        await self.outbox.stop(DRAIN_TIMEOUT_S)
        await self.dedicated.stop()
        await self.signals.stop()
        await self.gauges.stop()
        await self.metrics.stop()  # close() below writes what is left
        if self.request_log is not None:  # after the drain: its settlements wrote the last lines
            await self.request_log.stop()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.stop)
        self.metrics.close()  # after whatever else sets gauges: it takes this process's out of the sums
        await self.keys.stop()
        await self.upstream.close()
        await self.mocks.stop()
        await self.store.close()

    async def ready(self) -> tuple[bool, str]:
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            return False, f"store unavailable: {exc}"
        return True, "ok"


def traced(config: Config) -> Any:
    """The tracer `server.tracing` asks for; OpenTelemetry is imported here, and only here."""
    try:
        from gateway.observability.tracing import Tracer
    except ImportError as error:
        raise ConfigError("server.tracing.enabled", f"tracing needs the otel extra (pip install "
                          f"'llm-gateway[otel]'): {error}") from None
    return Tracer(config.server.tracing)
